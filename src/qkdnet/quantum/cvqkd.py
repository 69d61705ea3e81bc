"""Continuous-variable QKD: Gaussian-modulated coherent states, homodyne detection, reverse
reconciliation, collective attacks (Holevo bound), trusted detector noise.

Asymptotic formulas: Lodewyck et al., PRA 76, 042305 (2007), Eqs. (2)–(12); Laudenbach et al.,
Adv. Quantum Technol. 1, 1800011 (2018), Sec. 6. Finite size (:func:`cv_qkd_finite_rate`):
Leverrier, Grosshans and Grangier, "Finite-size analysis of a continuous-variable quantum key
distribution", PRA 81, 062343 (2010), arXiv:1005.0339. All variances are in shot-noise units
(SNU).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtri

from qkdnet.errors import ParameterError
from qkdnet.quantum._common import (
    channel_transmittance,
    check_block_size,
    check_open_probability,
    distances,
)
from qkdnet.quantum.link import LinkSpec

#: Smallest channel transmittance (100 dB) at which the rate is evaluated.
MIN_TRANSMITTANCE = 1e-10

#: Candidate modulation variances V_A (SNU) when ``optimise`` chooses V_A per distance.
_VARIANCE_GRID = np.geomspace(0.5, 100.0, 80)


def _g(nu: NDArray[Any]) -> NDArray[Any]:
    """Von Neumann entropy (bits) of a thermal mode with symplectic eigenvalue ν ≥ 1:
    G((ν−1)/2), G(x) = (x+1) log2(x+1) − x log2 x."""
    x = np.maximum((np.asarray(nu) - 1.0) / 2.0, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (x + 1.0) * np.log2(x + 1.0) - np.where(x > 0.0, x * np.log2(x), 0.0)
    return np.asarray(out)


def _eigen_pair(s: NDArray[Any], p: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    """ν1, ν2 with ν1² + ν2² = s and ν1² ν2² = p (symplectic eigenvalues).

    ν2² is taken as p/ν1² rather than (s − disc)/2, which cancels catastrophically at high
    loss where s² ≫ 4p.
    """
    disc = np.sqrt(np.maximum(s**2 - 4.0 * p, 0.0))
    nu1_sq = (s + disc) / 2.0
    return np.sqrt(nu1_sq), np.sqrt(p / nu1_sq)


def mutual_information(
    transmittance: ArrayLike,
    modulation_variance_snu: ArrayLike,
    excess_noise_snu: ArrayLike,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
) -> NDArray[np.float64]:
    """Alice–Bob mutual information I_AB, bits per symbol, homodyne detection.

    I_AB = ½ log2((V + χ_tot)/(1 + χ_tot)), V = V_A + 1, χ_tot = χ_line + χ_hom/T,
    χ_line = 1/T − 1 + ξ, χ_hom = (1 + v_el)/η − 1. Lodewyck et al. (2007), Eqs. (2)–(4).
    """
    t = np.asarray(transmittance, dtype=np.longdouble)
    v = np.asarray(modulation_variance_snu, dtype=np.longdouble) + 1.0
    xi = np.asarray(excess_noise_snu, dtype=np.longdouble)
    with np.errstate(divide="ignore"):
        chi_line = 1.0 / t - 1.0 + xi
        chi_hom = (1.0 + electronic_noise_snu) / homodyne_efficiency - 1.0
        chi_tot = chi_line + chi_hom / t
        return np.asarray(0.5 * np.log2((v + chi_tot) / (1.0 + chi_tot)), dtype=np.float64)


def holevo_bound(
    transmittance: ArrayLike,
    modulation_variance_snu: ArrayLike,
    excess_noise_snu: ArrayLike,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
) -> NDArray[np.float64]:
    """Holevo information χ_BE of Eve on Bob's homodyne data (reverse reconciliation), bits.

    Entangling-cloner attack on the EPR-equivalent state, detector noise trusted:
    χ_BE = G(λ1) + G(λ2) − G(λ3) − G(λ4), with λ1,2 from A = V²(1−2T) + 2T + T²(V + χ_line)²,
    B = T²(Vχ_line + 1)², and λ3,4 from C, D of Lodewyck et al. (2007), Eqs. (7)–(12).
    """
    # Extended precision (x87 80-bit where available): at high loss the four entropies are
    # large and nearly cancel.
    t = np.asarray(transmittance, dtype=np.longdouble)
    v = np.asarray(modulation_variance_snu, dtype=np.longdouble) + 1.0
    chi_line = 1.0 / t - 1.0 + np.asarray(excess_noise_snu, dtype=np.longdouble)
    chi_hom = (1.0 + electronic_noise_snu) / homodyne_efficiency - 1.0
    chi_tot = chi_line + chi_hom / t
    a = v**2 * (1.0 - 2.0 * t) + 2.0 * t + t**2 * (v + chi_line) ** 2
    b = t**2 * (v * chi_line + 1.0) ** 2
    l1, l2 = _eigen_pair(a, b)
    sqrt_b = np.sqrt(b)
    c = (v * sqrt_b + t * (v + chi_line) + a * chi_hom) / (t * (v + chi_tot))
    dd = sqrt_b * (v + sqrt_b * chi_hom) / (t * (v + chi_tot))
    l3, l4 = _eigen_pair(c, dd)
    return np.asarray(_g(l1) + _g(l2) - _g(l3) - _g(l4), dtype=np.float64)


def secret_fraction(
    transmittance: ArrayLike,
    modulation_variance_snu: float,
    excess_noise_snu: float,
    reconciliation_efficiency: float,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
) -> NDArray[np.float64]:
    """K = β I_AB − χ_BE, bits per symbol (may be negative; callers clip at 0)."""
    args = (modulation_variance_snu, excess_noise_snu, electronic_noise_snu, homodyne_efficiency)
    i_ab = mutual_information(transmittance, *args)
    return np.asarray(reconciliation_efficiency * i_ab - holevo_bound(transmittance, *args))


def cv_qkd_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """GG02 reverse-reconciliation key rate, bits per pulse (symbol), 0 where no key.

    Channel transmittance T from the link's fibre loss; V_A, ξ, β, v_el and η_hom from the
    link's CV fields. With ``optimise`` V_A is chosen per distance on a grid 0.5..100 SNU.
    """
    d = distances(distance_km)
    t = channel_transmittance(link, d)
    if link.homodyne_efficiency == 0.0:
        return np.zeros_like(d)
    variances = _VARIANCE_GRID[:, None] if optimise else None
    rate = secret_fraction(
        t[None, :] if variances is not None else t,
        variances if variances is not None else link.modulation_variance_snu,  # type: ignore[arg-type]
        link.excess_noise_snu,
        link.reconciliation_efficiency,
        link.electronic_noise_snu,
        link.homodyne_efficiency,
    )
    rate = np.nan_to_num(np.atleast_2d(rate), nan=0.0, neginf=0.0)
    rate = np.maximum(rate, 0.0).max(axis=0)
    # Beyond 100 dB the Holevo terms cancel to below double precision (the rate is < 1e-10
    # bits per symbol there); report no key rather than rounding noise.
    return np.asarray(np.where(t >= MIN_TRANSMITTANCE, rate, 0.0))


# --- Finite size: Leverrier, Grosshans and Grangier, PRA 81, 062343 (2010) -------------------

#: What ``block_size`` counts in :func:`cv_qkd_finite_rate` (printed in the CLI table header).
FINITE_BLOCK_MEANING = "exchanged symbols N"

#: Fraction of the N symbols disclosed for parameter estimation when not optimised (m = N/2).
DEFAULT_ESTIMATION_FRACTION = 0.5

#: How :func:`worst_case_holevo` bounds Eve's information over the confidence region.
WORST_CASE_MODES = ("interval", "corner")

#: Golden-section steps refining the maximum of χ_BE inside the transmittance interval
#: (the bracket shrinks to 0.618^12 ≈ 0.3 % of the interval).
_GOLDEN_STEPS = 12
#: Below this half-width / t̂ the interval ends and t̂ already give the maximum to ~4e-6 of
#: χ_BE (a scan of 3e5 random points), so the golden-section search is skipped there.
_NARROW_INTERVAL = 3e-3
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0

#: 2 dim H_X + 3 in Δ(n) (Leverrier et al. 2010): the reconciled key is binary, dim H_X = 2.
_SMOOTHING_PREFACTOR = 7.0

#: Candidate estimation fractions m/N when ``optimise`` is set. The small end matters for very
#: large blocks, where a tiny fraction already pins T and ξ down and n/N → 1.
_ESTIMATION_FRACTION_GRID = np.geomspace(1e-4, 0.9, 25)


def _check_worst_case(worst_case: str) -> None:
    if worst_case not in WORST_CASE_MODES:
        raise ParameterError(
            "worst_case", f"must be one of {', '.join(WORST_CASE_MODES)}, got {worst_case!r}"
        )


def estimation_confidence(epsilon_pe: float) -> float:
    """z_{ε_PE/2}: the number of standard deviations of a two-sided Gaussian interval that
    fails with probability ε_PE, i.e. (1 − erf(z/√2))/2 = ε_PE/2 (dimensionless).

    Leverrier, Grosshans and Grangier, PRA 81, 062343 (2010), parameter estimation (≈ 6.5 at
    ε_PE = 1e-10).
    Raises ParameterError naming ``epsilon_pe`` outside (0, 1).
    """
    check_open_probability("epsilon_pe", epsilon_pe)
    return float(-ndtri(epsilon_pe / 2.0))


def _estimation_interval(
    transmittance: ArrayLike,
    modulation_variance_snu: ArrayLike,
    excess_noise_snu: float,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
    estimation_symbols: ArrayLike,
    epsilon_pe: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """t̂ = √(ηT), the half-width z √(σ̂²/(m V_A)) of its interval, and σ²_max − 1 − v_el (the
    largest channel noise at Bob's detector, SNU): Leverrier et al. (2010)."""
    z = estimation_confidence(epsilon_pe)
    t = np.asarray(transmittance, dtype=np.float64)
    va = np.asarray(modulation_variance_snu, dtype=np.float64)
    m = np.asarray(estimation_symbols, dtype=np.float64)
    sigma2 = 1.0 + homodyne_efficiency * t * excess_noise_snu + electronic_noise_snu
    half_width = z * np.sqrt(sigma2 / (m * va))
    sigma2_max = sigma2 * (1.0 + z * math.sqrt(2.0) / np.sqrt(m))
    return (
        np.asarray(np.sqrt(homodyne_efficiency * t)),
        np.asarray(half_width),
        np.asarray(sigma2_max - 1.0 - electronic_noise_snu),
    )


def worst_case_channel(
    transmittance: ArrayLike,
    modulation_variance_snu: ArrayLike,
    excess_noise_snu: float,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
    estimation_symbols: ArrayLike,
    epsilon_pe: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Worst-case channel (T_min, ξ_max) from m disclosed symbols, ξ in SNU at the channel input.

    Bob's disclosed data follow y = t x + z with x ~ N(0, V_A), t = √(ηT) and
    Var z = σ² = 1 + ηTξ + v_el. The maximum-likelihood estimators t̂, σ̂² are taken at their
    expected values and moved to the pessimistic end of their confidence intervals:
    t_min = t̂ − z_{ε_PE/2} √(σ̂²/(m V_A)), σ²_max = σ̂² + z_{ε_PE/2} σ̂² √2/√m, then
    T_min = t_min²/η and ξ_max = (σ²_max − 1 − v_el)/(η T_min). Leverrier, Grosshans and
    Grangier, PRA 81, 062343 (2010), parameter estimation. Where t_min ≤ 0 the data cannot exclude a
    broken channel: T_min = 0 and ξ_max = inf are returned.
    """
    t_hat, half_width, noise_out = _estimation_interval(
        transmittance, modulation_variance_snu, excess_noise_snu, electronic_noise_snu,
        homodyne_efficiency, estimation_symbols, epsilon_pe,
    )
    t_min = t_hat - half_width
    ok = t_min > 0.0
    t_min_sq = np.where(ok, t_min, 1.0) ** 2
    transmittance_min = np.where(ok, t_min_sq / homodyne_efficiency, 0.0)
    xi_max = np.where(ok, noise_out / t_min_sq, np.inf)
    return np.asarray(transmittance_min), np.asarray(xi_max)


def finite_size_offset(
    key_symbols: ArrayLike, epsilon_smooth: float = 1e-10, epsilon_pa: float = 1e-10
) -> NDArray[np.float64]:
    """Δ(n), bits per key symbol: the smooth-min-entropy and privacy-amplification cost.

    Δ(n) = (2 dim H_X + 3) √(log2(2/ε̄)/n) + (2/n) log2(1/ε_PA) with dim H_X = 2, i.e.
    ≈ 7 √(log2(2/ε̄)/n): Leverrier, Grosshans and Grangier, PRA 81, 062343 (2010)
    (after Scarani and Renner, PRL 100, 200501, 2008). ``key_symbols`` is n = N − m.
    """
    check_open_probability("epsilon_smooth", epsilon_smooth)
    check_open_probability("epsilon_pa", epsilon_pa)
    n = np.asarray(key_symbols, dtype=np.float64)
    return np.asarray(
        _SMOOTHING_PREFACTOR * np.sqrt(math.log2(2.0 / epsilon_smooth) / n)
        + 2.0 / n * math.log2(1.0 / epsilon_pa)
    )


def worst_case_holevo(
    transmittance: ArrayLike,
    modulation_variance_snu: ArrayLike,
    excess_noise_snu: float,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
    estimation_symbols: ArrayLike,
    epsilon_pe: float,
    *,
    worst_case: str = "interval",
) -> NDArray[np.float64]:
    """S_{ε_PE}(B:E), bits per symbol: Eve's Holevo information maximised over the channels the
    m disclosed symbols cannot exclude (except with probability ε_PE); +inf where even T = 0
    cannot be excluded (no key can be certified).

    ``worst_case="corner"`` is the paper's evaluation: χ_BE at (T_min, ξ_max) of
    :func:`worst_case_channel` (Leverrier, Grosshans and Grangier, PRA 81, 062343, 2010).
    That corner is not always the maximum the paper's definition asks for: at fixed
    noise σ²_max, χ_BE often grows with t (beyond ~20 km on typical links), and for wide
    intervals (few disclosed symbols, low η) the corner can fall below χ_BE of the true
    channel. ``"interval"`` (default) therefore maximises χ_BE over t ∈ [t_min, t_max] at
    σ²_max (ends, t̂, and a golden-section search where the peak may be inside); since χ_BE
    grows with σ² at fixed t, the result is never below χ_BE of the estimated channel, so the
    finite rate never exceeds the asymptotic one.
    """
    _check_worst_case(worst_case)
    t_hat, half_width, noise_out = _estimation_interval(
        transmittance, modulation_variance_snu, excess_noise_snu, electronic_noise_snu,
        homodyne_efficiency, estimation_symbols, epsilon_pe,
    )
    shape = np.broadcast(t_hat, half_width, np.asarray(modulation_variance_snu)).shape
    t_hat, half_width, noise_out, va = (
        np.broadcast_to(np.asarray(x, dtype=np.float64), shape).ravel()
        for x in (t_hat, half_width, noise_out, modulation_variance_snu)
    )
    chi = _max_holevo(
        t_hat, half_width, noise_out, va, electronic_noise_snu, homodyne_efficiency,
        worst_case, np.full(t_hat.shape, np.inf),
    )
    return np.asarray(chi.reshape(shape))


def _holevo_at(
    t_point: NDArray[np.float64],
    variances: NDArray[np.float64],
    noise_out: NDArray[np.float64],
    electronic_noise_snu: float,
    eta: float,
) -> NDArray[np.float64]:
    """χ_BE for the channel t = √(ηT) = ``t_point`` (> 0) with noise σ²_max at Bob."""
    point_sq = t_point**2
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return holevo_bound(
            point_sq / eta, variances, noise_out / point_sq, electronic_noise_snu, eta
        )


def _max_holevo(
    t_hat: NDArray[np.float64],
    half_width: NDArray[np.float64],
    noise_out: NDArray[np.float64],
    variances: NDArray[np.float64],
    electronic_noise_snu: float,
    eta: float,
    worst_case: str,
    limit: NDArray[np.float64],
) -> NDArray[np.float64]:
    """S_{ε_PE} on 1-D arrays; +inf where T_min cannot be certified. Once a point's χ_BE
    reaches ``limit`` (it can no longer yield a wanted rate) it is not refined further."""
    t_min = t_hat - half_width
    ok = (t_min > 0.0) & (t_min * t_min >= eta * MIN_TRANSMITTANCE)
    chi = np.full(t_hat.shape, np.inf)
    idx = np.nonzero(ok)[0]

    def at(t_point: NDArray[np.float64], where: NDArray[np.intp]) -> NDArray[np.float64]:
        return _holevo_at(t_point, variances[where], noise_out[where], electronic_noise_snu, eta)

    if worst_case == "corner":
        chi[idx] = at(t_min[idx], idx)
        return chi
    # t̂ first: every candidate bounds the rate, so a point already past ``limit`` stops.
    chi[idx] = at(t_hat[idx], idx)
    idx = idx[chi[idx] < limit[idx]]
    # t ≤ √η: the channel transmittance cannot exceed 1.
    low, high = t_min[idx], np.minimum(t_hat[idx] + half_width[idx], math.sqrt(eta))
    f_mid, f_low, f_high = chi[idx], at(low, idx), at(high, idx)
    chi[idx] = np.fmax(f_mid, np.fmax(f_low, f_high))
    # χ_BE(t) is smooth and single-peaked on every profile scanned; its peak is inside the
    # interval when t̂ beats both ends, or when the larger end is not a local maximum (probe
    # 1 % of the interval inwards). Narrow intervals are skipped: there the three points are
    # within ~4e-6 of the maximum (3e5 random points).
    keep = (chi[idx] < limit[idx]) & (half_width[idx] > _NARROW_INTERVAL * t_hat[idx])
    idx, low, high = idx[keep], low[keep], high[keep]
    f_mid, f_low, f_high = f_mid[keep], f_low[keep], f_high[keep]
    high_end = f_high >= f_low
    end = np.where(high_end, high, low)
    probe = end + np.where(high_end, -0.01, 0.01) * (high - low)
    inside = (f_mid >= np.fmax(f_low, f_high)) | (at(probe, idx) > np.fmax(f_low, f_high))
    idx, low, high = idx[inside], low[inside], high[inside]
    if idx.size:
        chi[idx] = np.fmax(chi[idx], _golden_max(low, high, lambda t: at(t, idx)))
    return chi


def _golden_max(
    low: NDArray[np.float64],
    high: NDArray[np.float64],
    function: Callable[[NDArray[np.float64]], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """Largest value of ``function`` found by a golden-section search on [low, high]
    (element-wise, ``_GOLDEN_STEPS`` steps after the first two probes)."""
    a, b = low.copy(), high.copy()
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = function(c), function(d)
    best = np.fmax(fc, fd)
    for _ in range(_GOLDEN_STEPS):
        # Keep the sub-bracket around the larger value (NaN compares False: move right).
        left = fc > fd
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        c_new = np.where(left, b - _GOLDEN * (b - a), d)
        d_new = np.where(left, c, a + _GOLDEN * (b - a))
        value = function(np.where(left, c_new, d_new))
        fc, fd = np.where(left, value, fd), np.where(left, fc, value)
        c, d = c_new, d_new
        best = np.fmax(best, value)
    return np.asarray(best)


def _finite_points(
    link: LinkSpec,
    t: NDArray[np.float64],
    variances: NDArray[np.float64],
    i_ab: NDArray[np.float64],
    floor: NDArray[np.float64],
    fraction: float,
    block_size: float,
    epsilon_pe: float,
    delta: float,
    worst_case: str,
) -> NDArray[np.float64]:
    """(n/N)[β I_AB − S_{ε_PE}(B:E) − Δ(n)] at matching 1-D points (t, V_A), as
    :func:`worst_case_holevo` would give it, where that exceeds ``floor``; 0 elsewhere."""
    eta, v_el = link.homodyne_efficiency, link.electronic_noise_snu
    t_hat, half_width, noise_out = _estimation_interval(
        t, variances, link.excess_noise_snu, v_el, eta, fraction * block_size, epsilon_pe
    )
    gain = link.reconciliation_efficiency * i_ab - delta
    # A point whose χ_BE reaches gain − floor/(1 − m/N) cannot beat ``floor``.
    limit = gain - floor / (1.0 - fraction)
    chi = _max_holevo(t_hat, half_width, noise_out, variances, v_el, eta, worst_case, limit)
    rate = np.where(chi < limit, (1.0 - fraction) * (gain - chi), 0.0)
    return np.asarray(np.maximum(np.nan_to_num(rate, nan=0.0, neginf=0.0), 0.0))


def cv_qkd_finite_rate(
    link: LinkSpec,
    distance_km: ArrayLike,
    block_size: float,
    *,
    optimise: bool = False,
    estimation_fraction: float = DEFAULT_ESTIMATION_FRACTION,
    epsilon_pe: float = 1e-10,
    epsilon_smooth: float = 1e-10,
    epsilon_pa: float = 1e-10,
    worst_case: str = "interval",
) -> NDArray[np.float64]:
    """Finite-size GG02 key rate (homodyne, reverse reconciliation, collective attacks), bits
    per exchanged symbol (the unit of :func:`cv_qkd_rate`), 0 where no key.

    K = (n/N) [β I_AB − S_{ε_PE}(B:E) − Δ(n)]: Leverrier, Grosshans and Grangier, PRA 81,
    062343 (2010). ``block_size`` is N, the symbols Alice sends in one block; m =
    ``estimation_fraction``·N of them are disclosed to estimate the channel and n = N − m
    carry the key. I_AB is evaluated at the true channel (it is what reconciliation achieves);
    Eve's Holevo information S_{ε_PE} at the worst case the disclosed data allow
    (:func:`worst_case_holevo`: ``worst_case="corner"`` is the paper's (T_min, ξ_max) of
    :func:`worst_case_channel`, the default ``"interval"`` also scans the transmittance
    interval, which the corner does not always bound); Δ(n) is :func:`finite_size_offset`.
    ε_PE (estimation), ε̄ = ``epsilon_smooth`` (smoothing) and ε_PA (privacy amplification)
    default to the paper's 1e-10 each (ε_EC, the error-correction failure, does not enter
    the rate).

    With ``optimise`` V_A is chosen per distance on the grid of :func:`cv_qkd_rate`
    (0.5–100 SNU) and m/N on a grid 1e-4–0.9 (``estimation_fraction`` is then ignored);
    otherwise the link's V_A and ``estimation_fraction`` are used.
    Raises ParameterError naming the field for block_size < 1 or not finite, an ε or
    ``estimation_fraction`` outside (0, 1), an unknown ``worst_case``, or a negative distance.
    """
    check_block_size(block_size, "symbols")
    _check_worst_case(worst_case)
    if not (0.0 < estimation_fraction < 1.0):
        raise ParameterError(
            "estimation_fraction", f"must be in (0, 1), got {estimation_fraction!r}"
        )
    check_open_probability("epsilon_pe", epsilon_pe)
    check_open_probability("epsilon_smooth", epsilon_smooth)
    check_open_probability("epsilon_pa", epsilon_pa)
    d = distances(distance_km)
    t = channel_transmittance(link, d)
    if link.homodyne_efficiency == 0.0:
        return np.zeros_like(d)
    if optimise:
        variances = _VARIANCE_GRID
        fractions = _ESTIMATION_FRACTION_GRID
    else:
        variances = np.asarray([link.modulation_variance_snu])
        fractions = np.asarray([estimation_fraction])
    deltas = finite_size_offset((1.0 - fractions) * block_size, epsilon_smooth, epsilon_pa)
    noise = (link.electronic_noise_snu, link.homodyne_efficiency)
    # Grid (V_A, distance). With worst_case="interval" S_{ε_PE} is never below χ_BE of the
    # estimated channel, so (1 − m/N)(β I_AB − χ_BE(T, ξ) − Δ(n)) bounds the finite rate from
    # above; a grid point whose bound is below the best rate found so far cannot win and is
    # skipped, giving the full grid maximum at a fraction of the cost. ("corner" can beat the
    # bound only where the corner itself is no bound on Eve; the skip then errs low.)
    i_ab = mutual_information(t[None, :], variances[:, None], link.excess_noise_snu, *noise)
    asymptotic = link.reconciliation_efficiency * i_ab - holevo_bound(
        t[None, :], variances[:, None], link.excess_noise_snu, *noise
    )
    bounds = (1.0 - fractions)[:, None, None] * (asymptotic[None] - deltas[:, None, None])
    best = np.zeros_like(d)
    for k in np.argsort(-np.nan_to_num(bounds, nan=-np.inf).max(axis=(1, 2))):
        a_idx, d_idx = np.nonzero(bounds[k] > best[None, :])
        if a_idx.size == 0:
            continue
        rate = _finite_points(
            link, t[d_idx], variances[a_idx], i_ab[a_idx, d_idx], best[d_idx],
            float(fractions[k]), block_size, epsilon_pe, float(deltas[k]), worst_case,
        )
        np.maximum.at(best, d_idx, rate)
    return np.asarray(np.where(t >= MIN_TRANSMITTANCE, best, 0.0))
