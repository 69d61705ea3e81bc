"""``qkdnet keyrate``: key-rate theory tables, CSV and plots (asymptotic and finite-key).

Examples::

    qkdnet keyrate --protocol bb84-decoy --distance 0:250:1 --preset gys
    qkdnet keyrate -p bb84-decoy -p twin-field -p cv-qkd --distance 0:400:2 --plot rates.png
    qkdnet keyrate -p bb84-decoy --block 1e8 --preset lim2014 --csv fk.csv
"""

from __future__ import annotations

import csv
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from qkdnet.errors import ParameterError, ScenarioError
from qkdnet.quantum import (
    FINITE_KEY_BLOCKS,
    FINITE_KEY_PROTOCOLS,
    PROTOCOLS,
    LinkSpec,
    finite_key_rate_curve,
    plob_curve,
    secret_key_rate_curve,
    tgw_bound,
)
from qkdnet.quantum._common import channel_transmittance
from qkdnet.quantum.presets import PRESETS

#: Most points a --distance range may have.
MAX_POINTS = 100_000

# Allowed range of every link field a parameter file may set: (low, high, text).
_RANGES: dict[str, tuple[float, float, str]] = {
    "length_km": (0.0, math.inf, ">= 0 km"),
    "loss_db_per_km": (0.0, math.inf, ">= 0 dB/km"),
    "extra_loss_db": (0.0, math.inf, ">= 0 dB"),
    "detector_efficiency": (0.0, 1.0, "a probability in [0, 1]"),
    "dark_count_probability": (0.0, 1.0, "a probability in [0, 1]"),
    "afterpulse_probability": (0.0, 1.0, "a probability in [0, 1]"),
    "dead_time_s": (0.0, math.inf, ">= 0 s"),
    "misalignment_error": (0.0, 0.5, "in [0, 0.5]"),
    "repetition_rate_hz": (0.0, math.inf, "> 0 Hz"),
    "basis_probability_z": (0.0, 1.0, "a probability in [0, 1]"),
    "error_correction_efficiency": (1.0, math.inf, ">= 1"),
    "mean_pair_number": (0.0, math.inf, ">= 0 pairs per pulse"),
    "sending_probability": (0.0, 1.0, "a probability in [0, 1]"),
    "modulation_variance_snu": (0.0, math.inf, ">= 0 SNU"),
    "excess_noise_snu": (0.0, math.inf, ">= 0 SNU"),
    "reconciliation_efficiency": (0.0, 1.0, "in [0, 1]"),
    "electronic_noise_snu": (0.0, math.inf, ">= 0 SNU"),
    "homodyne_efficiency": (0.0, 1.0, "a probability in [0, 1]"),
}


class LinkParameters(BaseModel):
    """A YAML parameter file: any LinkSpec field, nothing else (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", strict=False)

    length_km: float | None = None
    loss_db_per_km: float | None = None
    extra_loss_db: float | None = None
    detector_efficiency: float | None = None
    dark_count_probability: float | None = None
    afterpulse_probability: float | None = None
    dead_time_s: float | None = None
    misalignment_error: float | None = None
    repetition_rate_hz: float | None = None
    intensities: tuple[float, ...] | None = None
    intensity_probabilities: tuple[float, ...] | None = None
    basis_probability_z: float | None = None
    error_correction_efficiency: float | None = None
    mean_pair_number: float | None = None
    sending_probability: float | None = None
    modulation_variance_snu: float | None = None
    excess_noise_snu: float | None = None
    reconciliation_efficiency: float | None = None
    electronic_noise_snu: float | None = None
    homodyne_efficiency: float | None = None
    name: str | None = None


def load_parameters(path: Path) -> dict[str, Any]:
    """Read and validate a YAML parameter file; raise ScenarioError naming file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the parameter file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: must be a mapping of link fields to values")
    try:
        model = LinkParameters.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(field, list(LinkParameters.model_fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see docs/keyrate.md for the keys"
            raise ScenarioError(f"{path}: unknown key {field!r} ({hint})") from exc
        message = f"{path}: field {field!r}: {err['msg']} (got {err['input']!r})"
        raise ScenarioError(message) from exc
    values = model.model_dump(exclude_none=True)
    for key, value in values.items():
        if key in _RANGES:
            low, high, text_range = _RANGES[key]
            bad = not (low <= value <= high) or (key == "repetition_rate_hz" and value <= 0.0)
            if bad or math.isnan(value):
                raise ScenarioError(f"{path}: field {key!r} must be {text_range}, got {value!r}")
    return values


def parse_distances(spec: str) -> NDArray[np.float64]:
    """``start:stop:step`` (stop included), ``start:stop`` (step 1), ``a,b,c`` or ``x``, km."""
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1.0
            if not step > 0.0:
                raise ParameterError("distance", f"step must be > 0 km, got {step!r}")
            if stop < start:
                raise ParameterError("distance", f"stop ({stop}) must be >= start ({start})")
            count = int(math.floor((stop - start) / step + 1e-9)) + 1
            if count > MAX_POINTS:
                raise ParameterError("distance", f"at most {MAX_POINTS} points, got {count}")
            values = start + step * np.arange(count)
        else:
            values = np.array([float(p) for p in spec.split(",")])
    except ValueError:
        raise ParameterError(
            "distance", f"expected START:STOP:STEP, START:STOP or a comma list in km, got {spec!r}"
        ) from None
    if np.any(~np.isfinite(values)) or np.any(values < 0.0):
        bad = values[~(np.isfinite(values) & (values >= 0.0))][0]
        raise ParameterError("distance", f"must be >= 0 km, got {bad:g}")
    return np.asarray(values, dtype=np.float64)


def build_link(preset: str | None, params: Path | None) -> LinkSpec:
    """The preset's link (or the LinkSpec defaults), overridden by a parameter file."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ParameterError(
                "preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
            )
        values.update(PRESETS[preset])
    if params is not None:
        values.update(load_parameters(params))
    return LinkSpec(**values)


@dataclass(frozen=True)
class Curve:
    """One protocol's rate against distance."""

    label: str
    protocol: str
    rate_per_pulse: NDArray[np.float64]
    block_size: float | None = None


def compute_curves(
    protocols: list[str], link: LinkSpec, distance_km: NDArray[np.float64],
    block: float | None, optimise: bool, console: Console | None = None,
) -> list[Curve]:
    """Rate curves for each protocol; with ``block`` every protocol that has a finite-key
    rate (:data:`FINITE_KEY_PROTOCOLS`) gets it, the others stay asymptotic."""
    for p in protocols:
        if p not in PROTOCOLS:
            raise ParameterError(
                "protocol", f"unknown protocol {p!r}; choose one of {', '.join(PROTOCOLS)}"
            )
    if block is not None:
        if not (block >= 1.0) or math.isinf(block):
            raise ParameterError("block", f"must be a block size >= 1 detection, got {block!r}")
        if not any(p in FINITE_KEY_PROTOCOLS for p in protocols):
            raise ParameterError(
                "block", "finite-key rates exist for "
                f"{', '.join(FINITE_KEY_PROTOCOLS)} only; add one of them with -p"
            )
    curves: list[Curve] = []
    with Progress(console=console, transient=True, disable=console is None) as progress:
        task = progress.add_task("key rates", total=len(protocols))
        for p in protocols:
            if block is not None and p in FINITE_KEY_PROTOCOLS:
                rate = finite_key_rate_curve(p, link, distance_km, block, optimise=optimise)
                curves.append(Curve(f"{p} (block {block:.0e})", p, rate, block))
            else:
                rate = secret_key_rate_curve(p, link, distance_km, optimise=optimise)
                curves.append(Curve(p, p, rate))
            progress.advance(task)
    return curves


def write_csv(path: Path, curves: list[Curve], link: LinkSpec,
              distance_km: NDArray[np.float64]) -> None:
    """One row per protocol and distance: distance_km, rate_per_pulse, rate_bps, plob, tgw."""
    plob = plob_curve(link, distance_km)
    tgw = tgw_bound(channel_transmittance(link, distance_km))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["protocol", "distance_km", "rate_per_pulse", "rate_bps", "plob_per_pulse",
                    "tgw_per_pulse", "block_size"])
        for c in curves:
            for i, d in enumerate(distance_km):
                w.writerow([c.protocol, f"{d:.6g}", f"{c.rate_per_pulse[i]:.6e}",
                            f"{c.rate_per_pulse[i] * link.repetition_rate_hz:.6e}",
                            f"{plob[i]:.6e}", f"{tgw[i]:.6e}",
                            "" if c.block_size is None else f"{c.block_size:.0f}"])


def write_plot(path: Path, curves: list[Curve], link: LinkSpec,
               distance_km: NDArray[np.float64]) -> None:
    """PNG: rate per pulse and per second against distance, PLOB drawn on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plob = plob_curve(link, distance_km)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    for ax, scale, unit in ((axes[0], 1.0, "bits per pulse"),
                            (axes[1], link.repetition_rate_hz, "bits per second")):
        for c in curves:
            y = np.where(c.rate_per_pulse > 0.0, c.rate_per_pulse * scale, np.nan)
            ax.semilogy(distance_km, y, label=c.label)
        ax.semilogy(distance_km, plob * scale, "k--", label="PLOB bound")
        ax.set_xlabel("distance (km)")
        ax.set_ylabel(f"secret key rate ({unit})")
        ax.grid(True, which="both", alpha=0.3)
        finite = [c.rate_per_pulse[c.rate_per_pulse > 0].min() for c in curves
                  if np.any(c.rate_per_pulse > 0)]
        low = min(finite) if finite else 1e-12
        ax.set_ylim(max(low * scale * 0.5, 1e-14 * scale), None)
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{link.loss_db_per_km} dB/km, η_D = {link.detector_efficiency:g}, "
                 f"{link.repetition_rate_hz:.3g} Hz")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(curves: list[Curve], link: LinkSpec, distance_km: NDArray[np.float64],
           rows: int) -> Table:
    plob = plob_curve(link, distance_km)
    table = Table(title="secret key rate", show_lines=False)
    table.add_column("distance_km", justify="right")
    per_second = len(curves) <= 2  # keep the table narrow when comparing many protocols
    for c in curves:
        table.add_column(f"{c.label}\nbits/pulse", justify="right")
        if per_second:
            table.add_column(f"{c.label}\nbits/s", justify="right")
    table.add_column("PLOB\nbits/pulse", justify="right")
    n = distance_km.size
    picks = np.linspace(0, n - 1, min(max(rows, 1), n)).round()
    index: NDArray[np.int64] = np.unique(picks).astype(np.int64)
    for i in index:
        cells = [f"{distance_km[i]:g}"]
        for c in curves:
            r = c.rate_per_pulse[i]
            cells.append(f"{r:.3e}" if r > 0 else "0")
            if per_second:
                bps = r * link.repetition_rate_hz
                cells.append(f"{bps:.3e}" if r > 0 else "0")
        cells.append(f"{plob[i]:.3e}")
        table.add_row(*cells)
    return table


def keyrate(
    protocol: Annotated[list[str] | None, typer.Option(
        "--protocol", "-p", help=f"Protocol (repeatable): {', '.join(PROTOCOLS)}.")] = None,
    distance: Annotated[str, typer.Option(
        help="Distances in km: START:STOP:STEP (stop included), START:STOP, or a,b,c.")
    ] = "0:250:5",
    block: Annotated[float | None, typer.Option(
        help="Finite-key block size for the protocols that have a finite-key rate "
             "(bb84-decoy: sifted detections n_X, Lim et al. 2014; see the docs).")] = None,
    params: Annotated[Path | None, typer.Option(
        help="YAML file of link parameters (LinkSpec field names).")] = None,
    preset: Annotated[str | None, typer.Option(
        help=f"Named parameter set: {', '.join(PRESETS)}.")] = None,
    optimise: Annotated[bool, typer.Option(
        "--optimise/--no-optimise",
        help="Optimise the source's intensities per distance (else use the link's values).")
    ] = True,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write a CSV here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG plot here.")] = None,
    rows: Annotated[int, typer.Option(help="Rows in the terminal table (0 = none).")] = 21,
) -> None:
    """Secret key rate against distance, with the PLOB bound: table, CSV and plot."""
    console = Console()
    protocols = list(protocol) if protocol else ["bb84-decoy"]
    distances = parse_distances(distance)
    link = build_link(preset, params)
    curves = compute_curves(protocols, link, distances, block, optimise, console)
    if rows > 0:
        console.print(_table(curves, link, distances, rows))
    for c in curves:
        positive = distances[c.rate_per_pulse > 0]
        reach = f"{positive.max():g} km" if positive.size else "no key at any distance given"
        console.print(f"{c.label}: key up to {reach}")
    if block is not None:
        for p in dict.fromkeys(protocols):
            if p in FINITE_KEY_BLOCKS:
                console.print(f"{p}: block {block:.3g} = {FINITE_KEY_BLOCKS[p]}")
            else:
                console.print(f"note: {p} has no finite-key rate here; its curve is asymptotic")
    try:
        if csv_path is not None:
            write_csv(csv_path, curves, link, distances)
            console.print(f"CSV: {csv_path}")
        if plot is not None:
            write_plot(plot, curves, link, distances)
            console.print(f"plot: {plot}")
    except OSError as exc:
        raise ParameterError("output", f"cannot write {exc.filename}: {exc.strerror}") from exc


def register(app: typer.Typer) -> None:
    """Add the ``keyrate`` command to the qkdnet CLI."""
    app.command("keyrate")(keyrate)


__all__ = ["LinkParameters", "keyrate", "load_parameters", "parse_distances", "register"]
