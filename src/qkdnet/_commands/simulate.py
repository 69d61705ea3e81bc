"""``qkdnet simulate SCENARIO``: run a scenario, write the HTML report and every series."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from qkdnet.errors import ParameterError
from qkdnet.scenario import Scenario, load_scenario, parse_duration_s
from qkdnet.simulation import simulate
from qkdnet.simulation.report import write_report

console = Console(highlight=False)


def run_and_report(scenario: Scenario, duration_s: float | None, out: Path) -> Path:
    """Simulate with a progress bar, write the report; return its path."""
    total = float(scenario.duration_s if duration_s is None else duration_s)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.percentage:>5.1f} % of network time"), TimeElapsedColumn(),
        console=console, transient=True,
    ) as bar:
        task = bar.add_task(f"simulating {scenario.name}", total=total)
        result = simulate(scenario, duration_s=duration_s,
                          progress=lambda t: bar.update(task, completed=t))
        bar.update(task, description="writing report")
        report = write_report(result, out)
    totals = result.totals()
    requested = sum(t["requested"] for t in totals.values())
    served = sum(t["served"] for t in totals.values())
    console.print(
        f"{scenario.name}: {result.duration_s / 3600:g} h of network time in "
        f"{result.wall_s:.2f} s; keys served {served:,} of {requested:,}; "
        f"{len(result.reroutes())} reroutes"
    )
    console.print(f"report: {report}")
    return report


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command."""

    @app.command("simulate")
    def simulate_command(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file (docs/scenarios.md).")],
        duration: Annotated[str | None, typer.Option(
            "--duration", help="Network time to simulate, e.g. 24h, 90m, 3600 (s); "
            "default: the scenario's duration_s.")] = None,
        out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path(
            "simulate-out"),
        engine: Annotated[str | None, typer.Option(
            "--engine", help="vector (fast) or keymanager (real key managers, small "
            "networks); default: the scenario's simulation.engine.")] = None,
    ) -> None:
        """Simulate a QKD network over time: a self-contained HTML report with plots
        (topology, pools, demand served/refused, relay paths, events and reroutes) and
        JSON/CSV of every series."""
        sc = load_scenario(scenario)
        if engine is not None:
            if engine not in ("vector", "keymanager"):
                raise ParameterError("--engine", f"vector or keymanager, got {engine!r}")
            sc = sc.model_copy(update={
                "simulation": sc.simulation.model_copy(update={"engine": engine})})
        duration_s = None if duration is None else parse_duration_s(duration, "--duration")
        run_and_report(sc, duration_s, out)
