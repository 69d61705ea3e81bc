"""``qkdnet postprocess ALICE BOB``: run the pipeline on detection records from files.

Example::

    qkdnet postprocess alice.npz bob.npz --out keys/
    qkdnet postprocess alice.csv bob.csv --save-npz converted/

The files are Alice's and Bob's records of one block (format: docs/records-format.md; NPZ,
or the simple CSV, converted on the fly). Malformed or mismatched files stop with a one-line
error (exit code 2) before any key is made.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console

from qkdnet.errors import ParameterError
from qkdnet.postprocessing.pipeline import Pipeline, PipelineConfig
from qkdnet.recordsio import join, read_party, write_party


def register(app: typer.Typer) -> None:
    """Add ``qkdnet postprocess`` to the CLI."""

    @app.command("postprocess")
    def postprocess(
        alice: Annotated[Path, typer.Argument(help="Alice's records (.npz or .csv).")],
        bob: Annotated[Path, typer.Argument(help="Bob's records (.npz or .csv).")],
        reconciliation: Annotated[str, typer.Option(help="cascade or ldpc.")] = "cascade",
        out: Annotated[
            Path | None, typer.Option(help="Write alice.key, bob.key, summary.json here.")
        ] = None,
        save_npz: Annotated[
            Path | None, typer.Option(help="Also write the inputs converted to NPZ here.")
        ] = None,
        seed: Annotated[int | None, typer.Option(help="Seed of the classical randomness.")] = None,
        qber_threshold: Annotated[float, typer.Option(help="Abort above this QBER.")] = 0.11,
        repetition_rate: Annotated[
            float | None, typer.Option(help="Pulse rate, Hz, to report a net rate in bit/s.")
        ] = None,
    ) -> None:
        """Post-process one block of a device's detection records into secret keys."""
        from qkdnet._commands.link import RunReport, run_blocks

        if reconciliation not in ("cascade", "ldpc"):
            raise ParameterError(
                "reconciliation", f"must be 'cascade' or 'ldpc', got {reconciliation!r}"
            )
        console = Console()
        a = read_party(alice)
        b = read_party(bob)
        records = join(a, b)
        if save_npz is not None:
            save_npz.mkdir(parents=True, exist_ok=True)
            write_party(a, save_npz / "alice.npz")
            write_party(b, save_npz / "bob.npz")
        rng = np.random.default_rng(seed)
        classical_rng, auth_rng = rng.spawn(2)
        pipeline = Pipeline(
            PipelineConfig(reconciliation=reconciliation, qber_threshold=qber_threshold),  # type: ignore[arg-type]
            rng=classical_rng,
            clock=time.perf_counter,
            auth_rng=auth_rng,
        )
        report = RunReport(repetition_rate)
        run_blocks(console, pipeline, [records], records.total_pulses, report, out is not None)
        summary = report.summary(pipeline)
        summary.update(alice=str(alice), bob=str(bob), reconciliation=reconciliation, seed=seed)
        report.print(console, summary, report.table(summary))
        if out is not None:
            report.write(out, summary)
            console.print(f"wrote {out / 'summary.json'}, {out / 'alice.key'}, {out / 'bob.key'}")
