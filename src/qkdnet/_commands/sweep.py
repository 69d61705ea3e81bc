"""``qkdnet sweep SCENARIO --vary PATH=VALUES ...``: many simulations in parallel."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qkdnet.errors import ParameterError
from qkdnet.scenario import load_scenario, parse_duration_s
from qkdnet.simulation.sweep import parse_variation, run_sweep

console = Console(highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command."""

    @app.command("sweep")
    def sweep_command(
        scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
        vary: Annotated[list[str], typer.Option(
            "--vary", help="PATH=start:stop:step or PATH=a,b,c, e.g. "
            "links.*.length_km=20:80:5 (repeat for a grid).")],
        duration: Annotated[str | None, typer.Option(
            "--duration", help="Network time per run, e.g. 2h (default: the scenario's).")] = None,
        scheduler: Annotated[str | None, typer.Option(
            "--scheduler", help="Dask scheduler address (default: a local process pool).")] = None,
        workers: Annotated[int | None, typer.Option(
            "--workers", help="Local processes (default: CPU count).")] = None,
        out: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("sweep-out"),
    ) -> None:
        """Run a scenario many times with fields varied (a grid), in parallel; writes
        sweep.csv and sweep.json, prints a table."""
        if not vary:
            raise ParameterError("--vary", "give at least one PATH=VALUES")
        sc = load_scenario(scenario)
        variations = [parse_variation(v) for v in vary]
        duration_s = None if duration is None else parse_duration_s(duration, "--duration")
        with Progress(TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("sweep", total=None)
            rows = run_sweep(sc, variations, duration_s=duration_s, scheduler=scheduler,
                             workers=workers,
                             progress=lambda done, total: bar.update(task, completed=done,
                                                                      total=total))
        out.mkdir(parents=True, exist_ok=True)
        (out / "sweep.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
        keys = list(rows[0]) if rows else []
        with (out / "sweep.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        table = Table(title=f"sweep of {sc.name}: {len(rows)} runs")
        shown = [v.path for v in variations] + ["served_fraction", "refused_no_key",
                                                 "refused_no_route", "reroutes"]
        for k in shown:
            table.add_column(k, justify="right")
        for row in rows:
            table.add_row(*(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])
                            for k in shown))
        console.print(table)
        console.print(f"results: {out / 'sweep.csv'}, {out / 'sweep.json'}")
