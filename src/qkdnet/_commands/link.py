"""``qkdnet link``: simulate one QKD link end to end, pulses to identical secret keys.

Example::

    qkdnet link --distance 50 --pulses 1e9 --reconciliation cascade --out out/ --seed 1
    qkdnet link --distance 50 --pulses 1e9 --eve intercept-resend:0.2

Prints pulses, detections, sifted bits, QBER, decoy estimates, leaked bits, f, secret bits,
net rate and time per stage; ``--out DIR`` writes ``alice.key``/``bob.key`` (the final keys,
packed bits, MSB first) and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qkdnet.errors import ParameterError
from qkdnet.postprocessing.pipeline import (
    STAGES,
    BlockResult,
    Pipeline,
    PipelineConfig,
    flip_first_bit,
)
from qkdnet.quantum.eavesdropping import Eavesdropper
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.records import PROTOCOLS
from qkdnet.quantum.sampling import simulate_blocks
from qkdnet.recordsio import write_pair

#: The most pulses one run may simulate (about 10 minutes of a 2-core machine at 50 km).
MAX_PULSES = 10**12


def parse_count(name: str, text: str) -> int:
    """Parse a count written as ``1e9``, ``1000000`` or ``2.5e8``; ParameterError if bad."""
    try:
        value = float(text)
    except ValueError as exc:
        raise ParameterError(name, f"must be a number such as 1e9, got {text!r}") from exc
    if not math.isfinite(value) or value < 1 or value != math.floor(value):
        raise ParameterError(name, f"must be a whole number >= 1, got {text!r}")
    return int(value)


class RunReport:
    """Accumulates block results into the printed table and summary.json."""

    def __init__(self, repetition_rate_hz: float | None = None) -> None:
        self.repetition_rate_hz = repetition_rate_hz
        self.blocks: list[BlockResult] = []
        self.alice_keys: list[np.ndarray] = []
        self.bob_keys: list[np.ndarray] = []
        self.seconds: dict[str, float] = {s: 0.0 for s in ("startup", *STAGES, "simulate")}
        self.wall_seconds = 0.0

    def add(self, result: BlockResult, keep_keys: bool) -> None:
        # Keep the per-block numbers, drop the block's arrays (bounded memory).
        if keep_keys and result.alice_key is not None and result.bob_key is not None:
            self.alice_keys.append(result.alice_key)
            self.bob_keys.append(result.bob_key)
        for k, v in result.seconds.items():
            self.seconds[k] = self.seconds.get(k, 0.0) + v
        self.blocks.append(
            BlockResult(
                **{
                    f: getattr(result, f)
                    for f in result.__dataclass_fields__
                    if f not in ("alice_key", "bob_key")
                }
            )
        )

    def summary(self, pipeline: Pipeline) -> dict[str, Any]:
        """The summary.json content (documented in docs/postprocessing.md)."""
        s = pipeline.summary
        ok = [b for b in self.blocks if not b.aborted]
        tested = [b for b in self.blocks if b.estimate is not None]
        n_test = sum(b.test_bits for b in self.blocks)
        m_test = sum(b.test_errors for b in self.blocks)
        denom = sum(
            b.sifted_bits * _h(b.qber_actual) for b in ok if b.qber_actual is not None
        )
        ec_leak = sum(b.reconciliation_leaked_bits for b in ok)
        pulses = s.pulses
        seconds_on_link = pulses / self.repetition_rate_hz if self.repetition_rate_hz else None
        net = pipeline.net_secret_bits
        return {
            "pulses": pulses,
            "blocks": s.blocks,
            "aborted_blocks": s.aborted_blocks,
            "aborted": s.aborted_blocks > 0,
            "abort_reasons": sorted({b.abort_reason for b in self.blocks if b.aborted}),
            "detections": s.detections,
            "sifted_bits": s.sifted_bits,
            "qber": (m_test / n_test) if n_test else None,
            "qber_actual": (
                sum(b.qber_actual * b.sifted_bits for b in ok if b.qber_actual is not None)
                / max(1, sum(b.sifted_bits for b in ok))
                if ok
                else None
            ),
            "leaked_bits": s.leaked_bits,
            "reconciliation_leaked_bits": sum(b.reconciliation_leaked_bits for b in self.blocks),
            "verification_leaked_bits": sum(b.verification_leaked_bits for b in self.blocks),
            "efficiency": (ec_leak / denom) if denom > 0 else None,
            "vacuum_bits_lower": sum(b.estimate.vacuum_bits for b in tested if b.estimate),
            "single_photon_bits_lower": sum(
                b.estimate.single_photon_bits for b in tested if b.estimate
            ),
            "phase_error_upper": max(
                (b.estimate.phase_error for b in tested if b.estimate), default=None
            ),
            "secret_bits": s.secret_bits,
            "auth_consumed_bits": s.auth_consumed_bits,
            "net_secret_bits": net,
            "net_rate_bps": (net / seconds_on_link) if seconds_on_link else None,
            # True only when a key was emitted and every emitted key matched.
            "keys_match": bool(ok) and all(b.keys_match for b in ok),
            "seconds": round(self.wall_seconds, 6),
            "stage_seconds": {k: round(v, 6) for k, v in self.seconds.items()},
        }

    def table(self, summary: dict[str, Any]) -> Table:
        """The terminal table."""
        t = Table(title="qkdnet link", show_header=True)
        t.add_column("quantity")
        t.add_column("value", justify="right")

        def fmt(v: Any, spec: str = ",") -> str:
            if v is None:
                return "-"
            return format(v, spec)

        rows = [
            ("pulses", fmt(summary["pulses"])),
            ("blocks (aborted)", f"{summary['blocks']} ({summary['aborted_blocks']})"),
            ("detections", fmt(summary["detections"])),
            ("sifted bits", fmt(summary["sifted_bits"])),
            ("QBER (test basis)", fmt(summary["qber"], ".3%")),
            ("QBER (corrected)", fmt(summary["qber_actual"], ".3%")),
            ("vacuum bits ≥ (s0)", fmt(summary["vacuum_bits_lower"], ",.0f")),
            ("single-photon bits ≥ (s1)", fmt(summary["single_photon_bits_lower"], ",.0f")),
            ("phase error ≤ (φ)", fmt(summary["phase_error_upper"], ".3%")),
            ("leaked bits (EC + verify)", fmt(summary["leaked_bits"])),
            ("reconciliation efficiency f", fmt(summary["efficiency"], ".3f")),
            ("secret bits", fmt(summary["secret_bits"])),
            ("authentication key used", fmt(summary["auth_consumed_bits"])),
            ("net secret bits", fmt(summary["net_secret_bits"])),
            ("net rate (bit/s at link rate)", fmt(summary["net_rate_bps"], ",.1f")),
            ("keys match", str(summary["keys_match"])),
        ]
        for k, v in rows:
            t.add_row(k, v)
        for stage, secs in summary["stage_seconds"].items():
            t.add_row(f"time: {stage}", f"{secs:.3f} s")
        t.add_row("time: total", f"{summary['seconds']:.3f} s")
        return t

    @staticmethod
    def print(console: Console, summary: dict[str, Any], table: Table) -> None:
        """Print the table, then one line per distinct abort reason."""
        console.print(table)
        for reason in summary["abort_reasons"]:
            console.print(f"[bold red]aborted:[/] {reason}", highlight=False)

    def write(self, out: Path, summary: dict[str, Any]) -> None:
        """Write alice.key, bob.key (packed final keys) and summary.json into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        a = np.concatenate(self.alice_keys) if self.alice_keys else np.zeros(0, np.uint8)
        b = np.concatenate(self.bob_keys) if self.bob_keys else np.zeros(0, np.uint8)
        (out / "alice.key").write_bytes(np.packbits(a).tobytes())
        (out / "bob.key").write_bytes(np.packbits(b).tobytes())
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _h(p: float | None) -> float:
    if p is None or p <= 0.0 or p >= 1.0:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def run_blocks(
    console: Console,
    pipeline: Pipeline,
    blocks: Any,
    total_pulses: int,
    report: RunReport,
    keep_keys: bool,
    on_records: Any = None,
    workers: int = 2,
) -> None:
    """Drive the pipeline over an iterator of blocks with a progress bar (pulses done);
    ``workers`` blocks are post-processed at once (see :meth:`Pipeline.run`)."""
    start = time.perf_counter()
    pipeline.warm_up()
    report.seconds["startup"] = time.perf_counter() - start
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("simulating", total=total_pulses)

        def timed_blocks() -> Any:
            # the simulator's time, and the callback on each block as it is pulled
            iterator = iter(blocks)
            while True:
                progress.update(task, description="simulating")
                t = time.perf_counter()
                records = next(iterator, None)
                report.seconds["simulate"] += time.perf_counter() - t
                if records is None:
                    return
                if on_records is not None:
                    on_records(records)
                yield records

        pipeline.set_on_stage(lambda name: progress.update(task, description=name))
        # Two blocks in flight when there are several: one core simulates or post-processes
        # the next block while the other finishes the current one (results stay in order
        # and equal to a one-at-a-time run).
        for result in pipeline.run(timed_blocks(), workers=workers):
            report.add(result, keep_keys)
            progress.advance(task, result.pulses)
    report.wall_seconds = time.perf_counter() - start


def register(app: typer.Typer) -> None:
    """Add ``qkdnet link`` to the CLI."""

    @app.command("link")
    def link(
        distance: Annotated[float, typer.Option(help="Fibre length, km.")] = 50.0,
        pulses: Annotated[str, typer.Option(help="Pulses to send, e.g. 1e9.")] = "1e8",
        protocol: Annotated[
            str, typer.Option(help=f"Protocol: {', '.join(PROTOCOLS)}.")
        ] = "bb84-decoy",
        reconciliation: Annotated[str, typer.Option(help="cascade or ldpc.")] = "cascade",
        eve: Annotated[
            str | None,
            typer.Option(help="Eavesdropper: intercept-resend:FRACTION, pns[:FRACTION], mitm."),
        ] = None,
        block_pulses: Annotated[
            str | None, typer.Option(help="Pulses per post-processing block (default: all).")
        ] = None,
        out: Annotated[
            Path | None, typer.Option(help="Write alice.key, bob.key, summary.json here.")
        ] = None,
        save_records: Annotated[
            bool, typer.Option(help="Also write each block's alice.npz/bob.npz under --out.")
        ] = False,
        seed: Annotated[int | None, typer.Option(help="Random seed (reproducible run).")] = None,
        qber_threshold: Annotated[float, typer.Option(help="Abort above this QBER.")] = 0.11,
    ) -> None:
        """Simulate one link end to end: pulses → sifting → ... → identical secret keys."""
        console = Console()
        n_pulses = parse_count("pulses", pulses)
        if n_pulses > MAX_PULSES:
            raise ParameterError("pulses", f"at most {MAX_PULSES:.0e}, got {n_pulses:.0e}")
        per_block = parse_count("block_pulses", block_pulses) if block_pulses else n_pulses
        if protocol not in PROTOCOLS:
            raise ParameterError("protocol", f"must be one of {PROTOCOLS}, got {protocol!r}")
        if reconciliation not in ("cascade", "ldpc"):
            raise ParameterError(
                "reconciliation", f"must be 'cascade' or 'ldpc', got {reconciliation!r}"
            )
        if not (distance >= 0.0) or not math.isfinite(distance):
            raise ParameterError("distance", f"must be >= 0 km, got {distance}")
        if save_records and out is None:
            raise ParameterError("save_records", "needs --out DIR")
        attacker = Eavesdropper.parse(eve) if eve else None
        spec = LinkSpec(length_km=distance, name=f"{distance:g} km")
        rng = np.random.default_rng(seed)
        quantum_rng, classical_rng, auth_rng = rng.spawn(3)
        tamper = None
        if attacker is not None and attacker.kind == "mitm":
            tamper = flip_first_bit
        pipeline = Pipeline(
            PipelineConfig(reconciliation=reconciliation, qber_threshold=qber_threshold),  # type: ignore[arg-type]
            rng=classical_rng,
            clock=time.perf_counter,
            tamper=tamper,
            auth_rng=auth_rng,
        )
        blocks = simulate_blocks(
            spec, n_pulses, per_block, quantum_rng, protocol=protocol, eve=attacker
        )
        counter = {"i": 0}

        def save(records: Any) -> None:
            if save_records and out is not None:
                i = counter["i"]
                write_pair(records, out / "records" / f"{i:04d}", f"block-{i}")
                counter["i"] += 1

        report = RunReport(spec.repetition_rate_hz)
        run_blocks(console, pipeline, blocks, n_pulses, report, out is not None, save)
        summary = report.summary(pipeline)
        summary.update(
            distance_km=distance, protocol=protocol, reconciliation=reconciliation,
            eve=eve, seed=seed,
        )
        report.print(console, summary, report.table(summary))
        if out is not None:
            report.write(out, summary)
            console.print(f"wrote {out / 'summary.json'}, {out / 'alice.key'}, {out / 'bob.key'}")
