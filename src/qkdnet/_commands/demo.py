"""``qkdnet demo --out DIR``: the Tokyo QKD Network scenario, simulated for 24 h, as a
report (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qkdnet.errors import ScenarioError
from qkdnet.scenario import load_scenario

TOKYO = "tokyo-qkd-network.yaml"


def find_scenario(name: str) -> Path:
    """A shipped scenario: ``scenarios/`` of the source tree (editable install or a clone)."""
    here = Path(__file__).resolve()
    for parent in (*here.parents, Path.cwd()):
        candidate = parent / "scenarios" / name
        if candidate.is_file():
            return candidate
    raise ScenarioError(f"cannot find scenarios/{name}; run from a clone of qkdnet")


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""

    @app.command("demo")
    def demo_command(
        out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("demo-out"),
        duration: Annotated[str, typer.Option("--duration", help="e.g. 24h, 90m.")] = "24h",
    ) -> None:
        """Simulate the 2010 Tokyo QKD Network for a day: failures, reroutes, report."""
        from qkdnet._commands.simulate import run_and_report
        from qkdnet.scenario import parse_duration_s

        scenario = load_scenario(find_scenario(TOKYO))
        run_and_report(scenario, parse_duration_s(duration, "--duration"), out)
