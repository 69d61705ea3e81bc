"""BBM92 with a spontaneous parametric down-conversion source, asymptotic key rate.

The source sits in the middle of the link (L/2 of fibre to each side) and emits
polarisation-entangled pairs with thermal statistics; both sides use threshold detectors with
the link's efficiency, dark counts and misalignment. Model and formulas: Ma, Fung, Lo,
"Quantum key distribution with entangled photon sources", PRA 76, 012307 (2007), Eqs. (9)–(12).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.quantum._common import binary_entropy, channel_transmittance, distances
from qkdnet.quantum.detectors import background_yield
from qkdnet.quantum.link import LinkSpec

E0 = 0.5


def gain_and_qber(
    half_pairs: ArrayLike,
    eta_a: ArrayLike,
    eta_b: ArrayLike,
    y0: float,
    misalignment_error: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Coincidence gain Q_λ and QBER E_λ of a thermal pair source (λ = half the mean pairs).

    Ma, Fung, Lo, PRA 76, 012307 (2007), Eqs. (9)–(10); η_A, η_B are the overall
    transmittances (fibre × detector) of the two arms, Y0 the background yield per side.
    """
    lam = np.asarray(half_pairs, dtype=np.float64)
    a = np.asarray(eta_a, dtype=np.float64) * lam
    b = np.asarray(eta_b, dtype=np.float64) * lam
    k = np.asarray(eta_a, dtype=np.float64) * np.asarray(eta_b, dtype=np.float64) * lam
    c = 1.0 + a + b - k
    # Eq. (9) is 1 − Y[(1+a)^−2 + (1+b)^−2] + Y² c^−2 (Y = 1 − Y0), which cancels to
    # rounding noise at high loss. Rearranged exactly: (1 − Y/(1+a)²)(1 − Y/(1+b)²) +
    # Y²[c^−2 − (1+a)^−2 (1+b)^−2], with (1+a)(1+b) − c = k(1 + λ) factored out.
    y = 1.0 - y0
    side_a = (a * (2.0 + a) + y0) / (1.0 + a) ** 2
    side_b = (b * (2.0 + b) + y0) / (1.0 + b) ** 2
    ab1 = (1.0 + a) * (1.0 + b)
    correlated = k * (1.0 + lam) * (ab1 + c) / (c**2 * ab1**2)
    gain = side_a * side_b + y**2 * correlated
    error = E0 * gain - 2.0 * (E0 - misalignment_error) * k * (1.0 + lam) / (ab1 * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        qber = np.where(gain > 0.0, error / gain, 0.5)
    return np.asarray(gain), np.asarray(np.clip(qber, 0.0, 0.5))


def bbm92_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False, sifting: float = 0.5
) -> NDArray[np.float64]:
    """Asymptotic BBM92 key rate, bits per pulse (per source pulse), vectorised over km.

    R = q Q_λ [1 − f h(E_λ) − h(E_λ)], q = ½ (Ma, Fung, Lo 2007, Eq. (12); bit and phase
    errors are equal for the symmetric source, and no decoys are needed because the source
    may be given to Eve). The source is at the middle; λ = ``link.mean_pair_number``/2, or
    chosen per distance on a grid when ``optimise``. ``sifting`` is q (½; → 1 with biased
    bases in the asymptotic limit).
    """
    d = distances(distance_km)
    eta_half = channel_transmittance(link, d / 2.0) * link.detector_efficiency
    # The extra loss of the link is split between the two arms (each arm gets half in dB).
    eta_half = eta_half * 10.0 ** (link.extra_loss_db / 20.0)
    y0 = background_yield(link.dark_count_probability)
    lams = (
        np.geomspace(1e-4, 1.0, 120)[:, None]
        if optimise
        else np.array([[link.mean_pair_number / 2.0]])
    )
    gain, qber = gain_and_qber(lams, eta_half, eta_half, y0, link.misalignment_error)
    h = binary_entropy(qber)
    rate = sifting * gain * (1.0 - link.error_correction_efficiency * h - h)
    return np.asarray(np.maximum(rate, 0.0).max(axis=0))
