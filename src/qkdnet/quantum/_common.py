"""Helpers shared by the protocol modules (internal)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError
from qkdnet.quantum.channels import fibre_transmittance
from qkdnet.quantum.detectors import detection_statistics
from qkdnet.quantum.link import LinkSpec


def distances(distance_km: ArrayLike) -> NDArray[np.float64]:
    """Validated distance array, km (raises ParameterError naming ``distance_km``)."""
    d = np.atleast_1d(np.asarray(distance_km, dtype=np.float64))
    if np.any(~np.isfinite(d)) or np.any(d < 0.0):
        bad = d[~(np.isfinite(d) & (d >= 0.0))][0]
        raise ParameterError("distance_km", f"must be a finite distance >= 0 km, got {bad!r}")
    return d


def channel_transmittance(link: LinkSpec, distance_km: NDArray[np.float64]) -> NDArray[np.float64]:
    """Fibre transmittance of ``link`` at each distance (km), without Bob's detector."""
    return fibre_transmittance(distance_km, link.loss_db_per_km, link.extra_loss_db)


def binary_entropy(p: ArrayLike) -> NDArray[np.float64]:
    """h(p) = −p log2 p − (1−p) log2(1−p), bits; h(0) = h(1) = 0, clipped to [0, 1]."""
    x = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -x * np.log2(x) - (1.0 - x) * np.log2(1.0 - x)
    return np.asarray(np.nan_to_num(h, nan=0.0))


def gain_and_qber(
    link: LinkSpec, intensity: ArrayLike, transmittance: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gain Q_k and QBER E_k of Poisson light of mean ``intensity`` over ``transmittance``."""
    m = np.asarray(intensity, dtype=np.float64) * np.asarray(transmittance, dtype=np.float64)
    return detection_statistics(
        m,
        detector_efficiency=link.detector_efficiency,
        dark_count_probability=link.dark_count_probability,
        misalignment_error=link.misalignment_error,
        afterpulse_probability=link.afterpulse_probability,
        dead_time_s=link.dead_time_s,
        repetition_rate_hz=link.repetition_rate_hz,
    )


def intensity_grid(low: float = 0.01, high: float = 1.0, points: int = 100) -> NDArray[np.float64]:
    """Column vector of candidate intensities for grid optimisation (broadcasts over distance)."""
    return np.linspace(low, high, points)[:, None]


def check_open_probability(name: str, value: float) -> float:
    """``value`` as a float if it lies in (0, 1) (an ε of a security proof, a probability that
    may be neither 0 nor 1); otherwise ParameterError naming ``name``."""
    if not (0.0 < value < 1.0):
        raise ParameterError(name, f"must be a probability in (0, 1), got {value!r}")
    return float(value)


def check_block_size(block_size: float, counts: str) -> float:
    """A finite-key block size as a float: finite and >= 1 (``counts`` names what it counts,
    for the message); otherwise ParameterError on ``block_size``."""
    n = float(block_size)
    if not (math.isfinite(n) and n >= 1.0):
        raise ParameterError(
            "block_size", f"must be a finite number of {counts} >= 1, got {block_size!r}"
        )
    return n
