"""BBM92 with a spontaneous parametric down-conversion source: asymptotic and finite-key rates.

The source sits in the middle of the link (L/2 of fibre to each side) and emits
polarisation-entangled pairs with thermal statistics; both sides use threshold detectors with
the link's efficiency, dark counts and misalignment. Model and formulas: Ma, Fung, Lo,
"Quantum key distribution with entangled photon sources", PRA 76, 012307 (2007), Eqs. (9)–(12).

The finite-key rate (:func:`bbm92_finite_rate`) puts the same coincidence statistics into the
key length of Tomamichel, Lim, Gisin, Renner, "Tight finite-key analysis for quantum
cryptography", Nat. Commun. 3, 634 (2012), Eq. (2): an entanglement-based, source-independent
bound with biased basis choice (key basis chosen with probability p by both sides, the other
basis only tests). See docs/validation-finite-bbm92.md.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError
from qkdnet.quantum._common import (
    binary_entropy,
    channel_transmittance,
    check_block_size,
    check_open_probability,
    distances,
)
from qkdnet.quantum.detectors import background_yield
from qkdnet.quantum.link import LinkSpec

E0 = 0.5

#: Candidate half mean pair numbers λ when optimising (shared by the asymptotic and the
#: finite-key rate, so that the optimised finite rate never exceeds the optimised asymptotic).
_PAIR_GRID = np.geomspace(1e-4, 1.0, 120)


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


def _coincidences(
    link: LinkSpec, d: NDArray[np.float64], optimise: bool
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Gain and QBER, shape (pair numbers, distances): the λ grid or the link's λ."""
    eta_half = channel_transmittance(link, d / 2.0) * link.detector_efficiency
    # The extra loss of the link is split between the two arms (each arm gets half in dB).
    eta_half = eta_half * 10.0 ** (link.extra_loss_db / 20.0)
    y0 = background_yield(link.dark_count_probability)
    lams = _PAIR_GRID[:, None] if optimise else np.array([[link.mean_pair_number / 2.0]])
    return gain_and_qber(lams, eta_half, eta_half, y0, link.misalignment_error)


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
    gain, qber = _coincidences(link, d, optimise)
    h = binary_entropy(qber)
    rate = sifting * gain * (1.0 - link.error_correction_efficiency * h - h)
    return np.asarray(np.maximum(rate, 0.0).max(axis=0))


# --------------------------------------------------------------------------------------------
# Finite key: Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012)
# --------------------------------------------------------------------------------------------

#: What ``block_size`` of :func:`bbm92_finite_rate` counts (for table headers).
FINITE_BLOCK_MEANING = "sifted key-basis coincidences n"

#: Candidate ratios s = p_z/p_x = √(k/n) of test to key basis when optimising (p_x =
#: 1/(1 + s), Tomamichel et al. 2012, Table I); the lower end is raised to 1/√n (k ≥ 1).
_RATIO_GRID_POINTS = 400
_RATIO_MAX = 10.0
#: QBER grid on which the best test ratio is tabulated before it is applied per distance.
_QBER_GRID = np.linspace(0.0, 0.5, 2049)


def statistical_deviation(
    key_bits: ArrayLike, test_bits: ArrayLike, epsilon_sec: ArrayLike
) -> NDArray[np.float64]:
    """μ of Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634 (2012), Eq. (2), dimensionless.

    μ = √((n + k)/(n k) · (k + 1)/k · ln(2/ε_sec)): how far the error rate of the n key bits
    may exceed that of the k test bits (sampling without replacement, Serfling's bound),
    except with a probability tied to ε_sec. ``key_bits`` n and ``test_bits`` k are counts
    (> 0); all three arguments broadcast together. Raises ParameterError for an ε_sec
    outside (0, 1).
    """
    eps = np.asarray(epsilon_sec, dtype=np.float64)
    bad = ~((eps > 0.0) & (eps < 1.0))
    if np.any(bad):
        raise ParameterError("epsilon_sec", f"must be in (0, 1), got {float(eps[bad].flat[0])!r}")
    n = np.asarray(key_bits, dtype=np.float64)
    k = np.asarray(test_bits, dtype=np.float64)
    return np.asarray(np.sqrt((n + k) / (n * k) * (k + 1.0) / k * np.log(2.0 / eps)))


def tomamichel_key_length(
    key_bits: ArrayLike,
    test_bits: ArrayLike,
    qber_tolerance: ArrayLike,
    leak_ec_bits: ArrayLike,
    epsilon_sec: ArrayLike,
    epsilon_cor: ArrayLike,
) -> NDArray[np.float64]:
    """Secret key length ℓ, bits, of Tomamichel, Lim, Gisin, Renner, Nat. Commun. 3, 634
    (2012), Eq. (2) with preparation quality q = 1 (not rounded; negative means no key):

    ℓ = n (1 − h(Q_tol + μ)) − leak_EC − log2(2/(ε_sec² ε_cor)), μ from
    :func:`statistical_deviation`; h(Q_tol + μ) is taken as 1 once Q_tol + μ ≥ ½.
    ``key_bits`` n and ``test_bits`` k are counts, ``qber_tolerance`` Q_tol a fraction,
    ``leak_ec_bits`` the bits disclosed by error correction; all broadcast together.
    Raises ParameterError for ε_sec or ε_cor outside (0, 1).
    """
    eps_cor = np.asarray(epsilon_cor, dtype=np.float64)
    bad = ~((eps_cor > 0.0) & (eps_cor < 1.0))
    if np.any(bad):
        raise ParameterError(
            "epsilon_cor", f"must be in (0, 1), got {float(eps_cor[bad].flat[0])!r}"
        )
    n = np.asarray(key_bits, dtype=np.float64)
    mu = statistical_deviation(n, test_bits, epsilon_sec)
    # h is not monotone past ½, and ½ already means that no key is left
    phase = np.minimum(np.asarray(qber_tolerance, dtype=np.float64) + mu, 0.5)
    eps_sec = np.asarray(epsilon_sec, dtype=np.float64)
    return np.asarray(
        n * (1.0 - binary_entropy(phase))
        - np.asarray(leak_ec_bits, dtype=np.float64)
        - np.log2(2.0 / (eps_sec**2 * eps_cor))
    )


def _key_length(
    qber: NDArray[np.float64],
    ratio: NDArray[np.float64],
    block: float,
    f_ec: float,
    eps_sec: float,
    eps_cor: float,
) -> NDArray[np.float64]:
    """ℓ (bits per block of n key bits, not rounded) at Q_tol = the expected QBER, with
    leak_EC = f n h(QBER) and k = n s² test bits (s = ``ratio`` = p_z/p_x).
    Non-increasing in ``qber``."""
    leak = f_ec * block * binary_entropy(qber)
    return tomamichel_key_length(block, block * ratio**2, qber, leak, eps_sec, eps_cor)


def _best_ratio(block: float, f_ec: float, eps_sec: float, eps_cor: float) -> NDArray[np.float64]:
    """Best test ratio s = p_z/p_x for each QBER of :data:`_QBER_GRID`: the argmax over a
    geometric grid of p_x² ⌊ℓ⌋⁺ (both sides choose the key basis with p_x = 1/(1 + s)).
    The same rounded objective as the rate, so that the rate is exactly the grid maximum at
    the grid QBERs (what keeps it non-increasing in the QBER)."""
    low = max(1.0 / math.sqrt(block), 1e-9)
    ratios = np.geomspace(low, max(_RATIO_MAX, low), _RATIO_GRID_POINTS)
    ell = _key_length(_QBER_GRID[:, None], ratios, block, f_ec, eps_sec, eps_cor)
    objective = np.maximum(np.floor(ell), 0.0) / (1.0 + ratios) ** 2
    return np.asarray(ratios[np.argmax(objective, axis=1)])


def bbm92_finite_rate(
    link: LinkSpec,
    distance_km: ArrayLike,
    block_size: float,
    *,
    optimise: bool = False,
    epsilon_sec: float = 1e-10,
    epsilon_cor: float = 1e-15,
    key_basis_probability: float | None = None,
) -> NDArray[np.float64]:
    """Finite-key BBM92 rate, bits per pulse (per source pulse), vectorised over km.

    Key length of Tomamichel, Lim, Gisin, Renner, "Tight finite-key analysis for quantum
    cryptography", Nat. Commun. 3, 634 (2012), Eq. (2), with preparation quality q = 1 (the
    entangled source may be Eve's; only the measurements are trusted):
    ℓ = n(1 − h(Q_tol + μ)) − leak_EC − log2(2/(ε_sec² ε_cor)), μ as in
    :func:`statistical_deviation`, leak_EC = f n h(Q_tol), f = ``link.error_correction_efficiency``.
    Q_tol is the expected QBER E_λ of the SPDC source in the middle (Ma, Fung, Lo, PRA 76,
    012307, 2007, Eqs. (9)–(10)), the same in both bases; the abort probability at that
    tolerance is not counted (Tomamichel et al.'s robustness ε_rob is left out).

    ``block_size`` is n, the number of sifted coincidences in the key basis (X for both)
    used for one key; the k test coincidences (Z for both) come on top. Both sides pick the
    key basis with probability p_x, so n = p_x² Q_λ N after N source pulses, and
    k = n (1 − p_x)²/p_x² (Tomamichel et al., Table I: p_x = (1 + √(k/n))⁻¹). The rate is
    ⌊ℓ⌋/N, 0 where no key. Without ``optimise``: λ = ``link.mean_pair_number``/2 and p_x =
    ``key_basis_probability`` (default ``link.basis_probability_z``; 0 or 1 give no key).
    With ``optimise``: λ on the grid of :func:`bbm92_rate` and p_x per distance.

    Bounded by ``bbm92_rate(link, d, optimise=optimise, sifting=p_x²)`` (``sifting=1`` when
    optimised) and tends to it as n → ∞. Raises ParameterError naming the field for a
    block_size below 1 or not finite, ε outside (0, 1), a negative distance or a
    key_basis_probability outside (0, 1).
    """
    d = distances(distance_km)
    block = check_block_size(block_size, "key-basis coincidences")
    check_open_probability("epsilon_sec", epsilon_sec)
    check_open_probability("epsilon_cor", epsilon_cor)
    if key_basis_probability is not None:
        check_open_probability("key_basis_probability", key_basis_probability)
    f_ec = link.error_correction_efficiency
    gain, qber = _coincidences(link, d, optimise)
    if optimise:
        # The best ratio depends on the QBER only. Each point uses the ratio tabulated at the
        # next grid QBER above its own: the result is an exact ℓ at an admissible k, and
        # stays non-increasing in the QBER (hence in distance) despite the grid.
        best = _best_ratio(block, f_ec, epsilon_sec, epsilon_cor)
        cell = np.minimum(np.searchsorted(_QBER_GRID, qber), _QBER_GRID.size - 1)
        ratio = best[cell]
    else:
        p_x = link.basis_probability_z if key_basis_probability is None else key_basis_probability
        if not (0.0 < p_x < 1.0):
            return np.zeros(d.shape)  # no test basis, or no key basis
        ratio = np.full(qber.shape, (1.0 - p_x) / p_x)
    ell = np.maximum(np.floor(_key_length(qber, ratio, block, f_ec, epsilon_sec, epsilon_cor)), 0.0)
    # A fraction p_x² = 1/(1 + s)² of the coincidences are key-basis ones: N = n/(p_x² Q_λ).
    return np.asarray((gain * ell / block / (1.0 + ratio) ** 2).max(axis=0))
