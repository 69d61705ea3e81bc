"""Single-photon detector models: efficiency, dark counts, afterpulsing, dead time, misalignment.

The conventions follow Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005) and Lim et al., PRA 89,
022307 (2014): ``dark_count_probability`` is per detector per gate, Bob has two detectors,
the background yield is Y0 = 1 − (1 − p_dc)² ≈ 2 p_dc, and a photon reaching Bob hits the
wrong detector with probability ``misalignment_error``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError


def background_yield(dark_count_probability: float, detectors: int = 2) -> float:
    """Y0 = 1 − (1 − p_dc)^k: probability that at least one of k detectors fires on vacuum."""
    if not (0.0 <= dark_count_probability <= 1.0):
        raise ParameterError("dark_count_probability", "must be a probability in [0, 1]")
    return float(1.0 - (1.0 - dark_count_probability) ** detectors)


def click_probability(
    arriving_mean_photons: ArrayLike, detector_efficiency: float, dark_count_probability: float
) -> NDArray[np.float64]:
    """Probability that Bob registers a detection for a Poisson input of mean m photons.

    Q = 1 − (1 − Y0)·e^(−η_D m): a click happens unless every photon is lost and no detector
    fires spuriously (threshold detectors). Ma et al., PRA 72, 012326 (2005), Eq. (6).
    """
    m = np.asarray(arriving_mean_photons, dtype=np.float64)
    y0 = background_yield(dark_count_probability)
    return np.asarray(1.0 - (1.0 - y0) * np.exp(-detector_efficiency * m))


def error_click_probability(
    arriving_mean_photons: ArrayLike,
    detector_efficiency: float,
    dark_count_probability: float,
    misalignment_error: float,
) -> NDArray[np.float64]:
    """E·Q = e0·Y0 + e_d (1 − e^(−η_D m)), e0 = ½: probability of an erroneous click.

    Ma et al., PRA 72, 012326 (2005), Eq. (7). Random background clicks are wrong half the time.
    """
    m = np.asarray(arriving_mean_photons, dtype=np.float64)
    y0 = background_yield(dark_count_probability)
    return np.asarray(0.5 * y0 + misalignment_error * -np.expm1(-detector_efficiency * m))


def afterpulse_factor(afterpulse_probability: float) -> float:
    """Multiplier (1 + p_ap) of the click probability for afterpulsing.

    An afterpulse adds a click with probability p_ap after each detection; half of them are
    errors. Lim et al., PRA 89, 022307 (2014), Sec. IV (their simulation model).
    """
    if not (0.0 <= afterpulse_probability <= 1.0):
        raise ParameterError("afterpulse_probability", "must be a probability in [0, 1]")
    return 1.0 + afterpulse_probability


def dead_time_factor(
    click_probability_per_pulse: ArrayLike, repetition_rate_hz: float, dead_time_s: float
) -> NDArray[np.float64]:
    """Fraction of clicks kept by a non-paralysable detector of dead time τ: 1/(1 + R τ).

    R = Q·f is the incident click rate (Hz). At high rates the counted rate saturates at 1/τ.
    Knoll, *Radiation Detection and Measurement*, ch. 4 (non-paralysable model).
    """
    if dead_time_s < 0.0:
        raise ParameterError("dead_time_s", "must be >= 0 s")
    q = np.asarray(click_probability_per_pulse, dtype=np.float64)
    return np.asarray(1.0 / (1.0 + q * repetition_rate_hz * dead_time_s))


def detection_statistics(
    arriving_mean_photons: ArrayLike,
    *,
    detector_efficiency: float,
    dark_count_probability: float,
    misalignment_error: float,
    afterpulse_probability: float = 0.0,
    dead_time_s: float = 0.0,
    repetition_rate_hz: float = 1e9,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gain Q and error rate E at Bob for Poisson light of mean m photons at his input.

    Returns ``(gain, qber)``: gain per pulse (0..1) and quantum bit error rate (0..0.5).
    Afterpulses add p_ap·Q clicks that are wrong half the time; dead time removes a fraction
    1 − 1/(1 + Q f τ) of the clicks uniformly (it does not change the error rate).
    """
    q = click_probability(arriving_mean_photons, detector_efficiency, dark_count_probability)
    eq = error_click_probability(
        arriving_mean_photons, detector_efficiency, dark_count_probability, misalignment_error
    )
    ap = afterpulse_factor(afterpulse_probability) - 1.0
    eq = eq + 0.5 * ap * q
    q = q * (1.0 + ap)
    keep = dead_time_factor(q, repetition_rate_hz, dead_time_s)
    gain = q * keep
    with np.errstate(divide="ignore", invalid="ignore"):
        qber = np.where(q > 0.0, eq / q, 0.5)
    return np.asarray(gain), np.asarray(qber)
