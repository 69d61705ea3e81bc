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


def classical_generators(seed: int | None) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators for the pipeline's classical randomness and authentication.

    With a seed: NumPy's PCG64, reproducible (studies, tests). Without one: AES-128 in
    counter mode (randomgen's AESCounter) keyed from the operating system's entropy. Some of
    these random values must stay secret (LDPC punctured bits) while others are announced
    (frame and hash seeds); PCG64's state can be recovered from enough announced outputs, a
    cryptographic generator's cannot.
    """
    if seed is not None:
        first, second = np.random.default_rng(seed).spawn(2)
        return first, second
    from randomgen import AESCounter

    return np.random.Generator(AESCounter()), np.random.Generator(AESCounter())


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
        seed: Annotated[
            int | None,
            typer.Option(
                help="Seed of the classical randomness, for reproducible studies only. "
                "Without it (the default for real keys) the randomness comes from AES-CTR "
                "keyed by the operating system."
            ),
        ] = None,
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
        classical_rng, auth_rng = classical_generators(seed)
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
