"""Twin-field QKD, sending-or-not-sending (SNS) variant: asymptotic and finite-size key rates.

Alice and Bob each send a phase-randomised coherent pulse of intensity μ with probability ε
(bit 1 for Alice, 0 for Bob) or nothing; an untrusted Charlie in the middle interferes the
pulses and announces single clicks. Wang, Yu, Hu, "Twin-field quantum key distribution with
large misalignment error", PRA 98, 062323 (2018), Eq. (1):

    R = 2ε(1−ε) μ e^−μ s_1 [1 − h(e_1^ph)] − f S_Z h(E_Z),

with the single-photon yield s_1 and phase-flip rate e_1^ph taken at their asymptotic
(infinite-decoy) values. Because only one photon has to cross half the link, R ∝ √η and the
rate crosses the PLOB bound at long distance.

:func:`twin_field_finite_rate` adds the finite-size analysis of Jiang, Yu, Hu, Wang, Phys.
Rev. Applied 12, 024061 (2019): decoy windows with vacuum and two intensities, Chernoff
bounds on every count, N total pulse pairs (docs/validation-finite-twinfield.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import i0e
from scipy.stats import qmc

from qkdnet.errors import ParameterError
from qkdnet.quantum._common import (
    binary_entropy,
    channel_transmittance,
    check_block_size,
    check_open_probability,
    distances,
)
from qkdnet.quantum.link import LinkSpec


def click_probabilities(
    arriving_mean_photons: ArrayLike, dark_count_probability: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Probabilities of exactly one click at Charlie when both, one or neither user sends.

    x = η μ is the mean photon number each sent pulse brings to the beam splitter. With
    random relative phase φ the detectors see Poisson light of means x(1 ± cos φ); averaging
    over φ gives 2(1−p_d)e^(−x) I0(x) − 2(1−p_d)² e^(−2x) for both sending (Wang, Yu, Hu 2018,
    Appendix), 2(1−p_d)e^(−x/2)[1 − (1−p_d)e^(−x/2)] for one, and 2p_d(1−p_d) for none.
    """
    x = np.asarray(arriving_mean_photons, dtype=np.float64)
    pd = dark_count_probability
    # i0e(x) = e^−x I0(x): stable for any x.
    p_both = 2.0 * (1.0 - pd) * i0e(x) - 2.0 * (1.0 - pd) ** 2 * np.exp(-2.0 * x)
    p_one = 2.0 * (1.0 - pd) * np.exp(-x / 2.0) * (1.0 - (1.0 - pd) * np.exp(-x / 2.0))
    p_none = np.full_like(x, 2.0 * pd * (1.0 - pd))
    return np.asarray(p_both), np.asarray(p_one), p_none


def _z_window_statistics(
    mu: NDArray[np.float64], eps: NDArray[np.float64], eta_half: NDArray[np.float64],
    dark_count_probability: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Z-window gain S_Z and error gain S_Z·E_Z per time slot (Wang, Yu, Hu 2018).

    Sending means bit 1 for Alice and bit 0 for Bob, so the bits disagree when both or
    neither sent; a Z-window event is exactly one click.
    """
    p_both, p_one, p_none = click_probabilities(eta_half * mu, dark_count_probability)
    s_z = eps**2 * p_both + 2.0 * eps * (1.0 - eps) * p_one + (1.0 - eps) ** 2 * p_none
    errors = eps**2 * p_both + (1.0 - eps) ** 2 * p_none
    return np.asarray(s_z), np.asarray(errors)


def sns_rate_terms(
    mu: ArrayLike, epsilon: ArrayLike, eta_half: ArrayLike, dark_count_probability: float,
    misalignment_error: float, error_correction_efficiency: float,
) -> NDArray[np.float64]:
    """SNS key rate per time slot (bits), unclipped, broadcasting over all array inputs.

    η_half is the transmittance from one user to Charlie's detectors (fibre × detector).
    Charlie has two threshold detectors behind a 50:50 beam splitter; a Z-window event is
    exactly one click. With both users sending, the phase-averaged probability of exactly one
    click is given by :func:`click_probabilities`.
    """
    mu = np.asarray(mu, dtype=np.float64)
    eps = np.asarray(epsilon, dtype=np.float64)
    eta = np.asarray(eta_half, dtype=np.float64)
    pd = dark_count_probability
    s_z, errors = _z_window_statistics(mu, eps, eta, pd)
    with np.errstate(divide="ignore", invalid="ignore"):
        e_z = np.where(s_z > 0.0, errors / s_z, 0.5)
    # Single photon from one side, vacuum from the other: exactly one click.
    s1 = eta * (1.0 - pd) + (1.0 - eta) * 2.0 * pd * (1.0 - pd)
    e1 = (eta * misalignment_error * (1.0 - pd) + (1.0 - eta) * pd * (1.0 - pd)) / s1
    untagged = 2.0 * eps * (1.0 - eps) * mu * np.exp(-mu) * s1
    leak = error_correction_efficiency * s_z * binary_entropy(e_z)
    return np.asarray(untagged * (1.0 - binary_entropy(e1)) - leak)


def _half_link_transmittance(link: LinkSpec, d: NDArray[np.float64]) -> NDArray[np.float64]:
    """η from one user to Charlie's detectors: fibre L/2, half the extra loss, detector."""
    return np.asarray(
        channel_transmittance(link, d / 2.0)
        * 10.0 ** (link.extra_loss_db / 20.0)
        * link.detector_efficiency
    )


def twin_field_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """SNS twin-field key rate, bits per time slot, vectorised over the Alice–Bob distance (km).

    Charlie sits in the middle (L/2 each side, link's extra loss split evenly). μ =
    ``link.intensities[0]`` and ε = ``link.sending_probability``, or with ``optimise`` both
    chosen per distance on a grid (μ 0.01..1, ε 0.005..0.5).
    """
    d = distances(distance_km)
    eta_half = _half_link_transmittance(link, d)
    if optimise:
        mus = np.linspace(0.01, 1.0, 40)[:, None, None]
        eps = np.geomspace(0.005, 0.5, 40)[None, :, None]
    else:
        mus = np.array([[[link.intensities[0]]]])
        eps = np.array([[[link.sending_probability]]])
    rate = sns_rate_terms(
        mus, eps, eta_half[None, None, :], link.dark_count_probability,
        link.misalignment_error, link.error_correction_efficiency,
    )
    return np.asarray(np.maximum(rate, 0.0).max(axis=(0, 1)))


# ---------------------------------------------------------------------------------------------
# Finite-size key rate (Jiang, Yu, Hu, Wang, Phys. Rev. Applied 12, 024061, 2019)
# ---------------------------------------------------------------------------------------------

#: What ``block_size`` counts in :func:`twin_field_finite_rate` (printed by the CLI).
FINITE_BLOCK_MEANING = "total pulse pairs N"

#: Default of every ε and of the Chernoff failure probability ξ.
#: Each Chernoff estimate is one side of a two-sided interval, ξ/2 per side: exponent ln(2/ξ).
_DEFAULT_EPSILON = 1e-10
#: Bisection steps of the Chernoff root solves (the bracket halves each step: 2^-64).
_BISECTION_STEPS = 64
#: Gauss–Legendre nodes for the average over the relative phase inside one phase slice.
_PHASE_NODES, _PHASE_WEIGHTS = np.polynomial.legendre.leggauss(16)


def _scaled_log1p(scale: NDArray[np.float64], z: NDArray[np.float64]) -> NDArray[np.float64]:
    """scale · ln(1 + z/scale), 0 where scale = 0; log1p keeps it exact for z ≪ scale."""
    positive = scale > 0.0
    ratio = z / np.where(positive, scale, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = scale * np.log1p(np.maximum(ratio, -1.0))
    return np.asarray(np.where(positive, value, 0.0))


def _bisect(
    func: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    target: float,
    lower: NDArray[np.float64],
    upper: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Root of ``func(z) = target`` for increasing ``func``, bracketed by [lower, upper]."""
    lo, hi = lower.copy(), upper.copy()
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        above = func(mid) >= target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return hi


def _upper_bracket(
    func: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    target: float,
    scale: NDArray[np.float64],
) -> NDArray[np.float64]:
    """A deviation z ≥ 0 with func(z) ≥ target, doubled from the Gaussian width until it is."""
    z = 2.0 * (target + np.sqrt(2.0 * target * scale)) + 1.0
    for _ in range(200):
        short = func(z) < target
        if not short.any():
            break
        z = np.where(short, 2.0 * z, z)
    return np.asarray(z)


def chernoff_expected_bounds(
    observed: ArrayLike, failure_probability: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lower and upper bounds (counts) on the expected value behind an observed count X.

    Multiplicative Chernoff bound as used by Jiang, Yu, Hu, Wang, PR Applied 12, 024061
    (2019) (after Zhang et al., PRA 95, 012333, 2017): E^L = X/(1+δ1), E^U = X/(1−δ2) with
    [e^δ1/(1+δ1)^(1+δ1)]^(X/(1+δ1)) = ξ/2 and [e^−δ2/(1−δ2)^(1−δ2)]^(X/(1−δ2)) = ξ/2.
    Both conditions read E − X + X ln(X/E) = ln(2/ξ); this solves that equation below and
    above X by bisection (vectorised over ``observed``). X = 0 gives [0, ln(2/ξ)].
    """
    x = np.asarray(observed, dtype=np.float64)
    c = math.log(2.0 / failure_probability)
    zero = np.zeros_like(x)
    # E = X − z: exponent −z − X ln(1 − z/X), growing with z to +inf at z = X.
    low_z = _bisect(lambda z: -z - _scaled_log1p(x, -z), c, zero, x)

    def up_f(z: NDArray[np.float64]) -> NDArray[np.float64]:
        # E = X + z: exponent z − X ln(1 + z/X).
        return np.asarray(z - _scaled_log1p(x, z))

    up_z = _bisect(up_f, c, zero, _upper_bracket(up_f, c, x))
    return np.asarray(np.where(x > 0.0, x - low_z, 0.0)), np.asarray(x + up_z)


def chernoff_observed_bounds(
    expected: ArrayLike, failure_probability: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lower and upper bounds (counts) on the value observed for an expected count Y.

    The forward multiplicative Chernoff bounds P[X ≤ (1−δ)Y] ≤ [e^−δ/(1−δ)^(1−δ)]^Y and
    P[X ≥ (1+δ)Y] ≤ [e^δ/(1+δ)^(1+δ)]^Y, each set to ξ/2: both read Y − X + X ln(X/Y) =
    ln(2/ξ), solved below and above Y (the lower bound is 0 where Y ≤ ln(2/ξ)).
    Jiang et al. (2019) take this step for the untagged bits n1 and their phase-flip errors.
    """
    y = np.asarray(expected, dtype=np.float64)
    c = math.log(2.0 / failure_probability)
    zero = np.zeros_like(y)

    def low_f(z: NDArray[np.float64]) -> NDArray[np.float64]:
        # X = Y − z: exponent z + (Y − z) ln(1 − z/Y), equal to Y at z = Y.
        ratio = np.maximum(-z / np.where(y > 0.0, y, 1.0), -1.0 + 1e-16)
        return np.asarray(z + (y - z) * np.log1p(ratio))

    low_z = _bisect(low_f, c, zero, y)
    lower = np.where(y > c, y - low_z, 0.0)

    def up_f(z: NDArray[np.float64]) -> NDArray[np.float64]:
        # X = Y + z: exponent −z + (Y + z) ln(1 + z/Y).
        return np.asarray(-z + (y + z) * np.log1p(z / np.where(y > 0.0, y, 1e-300)))

    up_z = _bisect(up_f, c, zero, _upper_bracket(up_f, c, y))
    return np.asarray(lower), np.asarray(y + up_z)


def _phase_window_error(
    arriving_mean_photons: NDArray[np.float64], dark_count_probability: float,
    misalignment_error: float, phase_slice_rad: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Probability of an error click in an X1 window that passed the phase post-selection.

    Both users send x = ημ1 arriving photons with relative phase δ uniform in [−Δ/2, Δ/2]
    (the window |θA − θB − kπ| ≤ Δ/2 kept by the SNS protocol; k = 1 swaps the detectors and
    gives the same numbers). The interference visibility is reduced by the misalignment e_d:
    the wrong detector sees mean x[1 − (1−2e_d)cos δ], the right one x[1 + (1−2e_d)cos δ]
    (total 2x). An error is exactly one click, in the wrong detector:
    (1−p_d)e^(−m_right) − (1−p_d)² e^(−2x), averaged over δ by Gauss–Legendre quadrature.
    As x → 0 and Δ → 0 the single-photon part of this has error rate e_d, the value the
    asymptotic :func:`sns_rate_terms` uses for e_1.
    """
    pd = dark_count_probability
    visibility = 1.0 - 2.0 * misalignment_error
    half = np.asarray(phase_slice_rad, dtype=np.float64)[..., None] / 2.0
    delta = half * _PHASE_NODES  # nodes on [−Δ/2, Δ/2]
    x = arriving_mean_photons[..., None]
    mean_exp = np.sum(_PHASE_WEIGHTS * np.exp(-x * (1.0 + visibility * np.cos(delta))), axis=-1)
    # The weights sum to 2 on [−1, 1]: halve for the average.
    error = (1.0 - pd) * 0.5 * mean_exp - (1.0 - pd) ** 2 * np.exp(-2.0 * x[..., 0])
    # Zero (not a rounding error below it) without dark counts and misalignment at δ = 0.
    return np.asarray(np.maximum(error, 0.0))


def _sns_finite_key(
    settings: dict[str, NDArray[np.float64]], eta_half: NDArray[np.float64], block_size: float,
    link: LinkSpec, epsilons: tuple[float, float, float, float],
) -> NDArray[np.float64]:
    """Finite-size key per pulse pair, unclipped (negative where there is no key).

    Jiang, Yu, Hu, Wang, PR Applied 12, 024061 (2019): observed counts of each window class
    → Chernoff bounds on their expected values → decoy bounds on the expected single-photon
    yield s1 and the expected phase-flip errors of the untagged bits → Chernoff bounds on
    the observed n1 and phase-flip count → key length. The observed counts are simulated as
    their expected values (the usual way to draw a finite-key curve).
    """
    eps_cor, eps_pa, eps_smooth, xi = epsilons
    pd = link.dark_count_probability
    n = block_size
    mu_z, eps = settings["mu_z"], settings["epsilon"]
    mu1, mu2, p_z = settings["mu1"], settings["mu2"], settings["p_z"]
    p0, p1, p2 = settings["p0"], settings["p1"], settings["p2"]
    delta = settings["phase_slice_rad"]
    decoy = (1.0 - p_z) ** 2 * n

    # Decoy windows: vacuum–vacuum, one side μk and the other vacuum (both orders), and the
    # X1 windows (both μ1) whose phases agree to within Δ/2 modulo π: a fraction Δ/π.
    _, s_1, s_00 = click_probabilities(eta_half * mu1, pd)
    _, s_2, _ = click_probabilities(eta_half * mu2, pd)
    windows_00 = decoy * p0**2
    windows_1 = decoy * 2.0 * p0 * p1
    windows_2 = decoy * 2.0 * p0 * p2
    windows_x = decoy * p1**2 * delta / np.pi
    errors_x = windows_x * _phase_window_error(eta_half * mu1, pd, link.misalignment_error, delta)

    s00_lo, s00_hi = (b / windows_00 for b in chernoff_expected_bounds(windows_00 * s_00, xi))
    s1_lo = chernoff_expected_bounds(windows_1 * s_1, xi)[0] / windows_1
    s2_hi = chernoff_expected_bounds(windows_2 * s_2, xi)[1] / windows_2
    tx_hi = chernoff_expected_bounds(errors_x, xi)[1] / windows_x

    # Two-decoy lower bound on the single-photon yield (μ2 > μ1 > 0), Jiang et al. (2019)
    # and Wang, Yu, Hu (2018): s1 ≥ [μ2² e^μ1 S_μ1 − μ1² e^μ2 S_μ2 − (μ2² − μ1²) S_00] /
    # [μ1 μ2 (μ2 − μ1)], each S at the side of its interval that makes the bound smallest.
    single = (
        mu2**2 * np.exp(mu1) * s1_lo - mu1**2 * np.exp(mu2) * s2_hi - (mu2**2 - mu1**2) * s00_hi
    ) / (mu1 * mu2 * (mu2 - mu1))
    single = np.maximum(single, 0.0)
    # Phase-flip errors of single photons: T_X1 ≥ e^−2μ1 S_00/2 + 2μ1 e^−2μ1 s1 e1.
    single_errors = np.maximum(
        (tx_hi - np.exp(-2.0 * mu1) * s00_lo / 2.0) / (2.0 * mu1 * np.exp(-2.0 * mu1)), 0.0
    )

    # Z windows: untagged bits are one user sending one photon, the other not sending.
    untagged = n * p_z**2 * 2.0 * eps * (1.0 - eps) * mu_z * np.exp(-mu_z)
    n1 = chernoff_observed_bounds(untagged * single, xi)[0]
    phase_errors = chernoff_observed_bounds(untagged * single_errors, xi)[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(n1 > 0.0, np.minimum(phase_errors / n1, 0.5), 0.5)
    s_z, errors_z = _z_window_statistics(mu_z, eps, eta_half, pd)
    n_t = n * p_z**2 * s_z
    with np.errstate(divide="ignore", invalid="ignore"):
        e_z = np.where(s_z > 0.0, errors_z / s_z, 0.5)
    # Key length (Jiang et al. 2019): n1[1 − H(e1)] − f n_t H(E_Z) − log2(2/ε_cor)
    # − 2 log2(1/(√2 ε_PA ε̂)).
    key = (
        n1 * (1.0 - binary_entropy(e1))
        - link.error_correction_efficiency * n_t * binary_entropy(e_z)
        - math.log2(2.0 / eps_cor)
        - 2.0 * math.log2(1.0 / (math.sqrt(2.0) * eps_pa * eps_smooth))
    )
    return np.asarray(key / n)


#: Search box of the optimiser, as (low, high, log-scaled). μ_z and ε span the same ranges as
#: the grid of :func:`twin_field_rate`, so the optimised finite rate stays comparable with it.
_SEARCH_BOX: dict[str, tuple[float, float, bool]] = {
    "mu_z": (0.01, 1.0, True),
    "epsilon": (0.005, 0.5, True),
    "mu1": (1e-3, 0.5, True),
    "mu2_minus_mu1": (1e-3, 1.0, True),
    "one_minus_p_z": (1e-3, 0.95, True),
    "p0": (0.01, 0.98, False),
    "p1_share": (0.01, 0.99, False),
    "phase_slice_rad": (math.pi / 256.0, math.pi / 2.0, True),
}
_SEARCH_KEYS = tuple(_SEARCH_BOX)
#: Sobol points of the global stage (2^9) and coordinate sweeps of the local stage.
_SOBOL_LOG2 = 9
_SWEEPS = 8
_SWEEP_POINTS = np.linspace(-1.0, 1.0, 9)
#: Longest curve optimised point by point; longer ones are optimised at this many anchors.
_ANCHORS = 48


def _settings_from_unit(u: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Map points of the unit cube (last axis = _SEARCH_KEYS) to protocol settings."""
    values = {}
    for i, key in enumerate(_SEARCH_KEYS):
        low, high, log = _SEARCH_BOX[key]
        t = u[..., i]
        values[key] = low * (high / low) ** t if log else low + (high - low) * t
    rest = 1.0 - values["p0"]
    return {
        "mu_z": values["mu_z"],
        "epsilon": values["epsilon"],
        "mu1": values["mu1"],
        "mu2": values["mu1"] + values["mu2_minus_mu1"],
        "p_z": 1.0 - values["one_minus_p_z"],
        "p0": values["p0"],
        "p1": rest * values["p1_share"],
        "p2": rest * (1.0 - values["p1_share"]),
        "phase_slice_rad": values["phase_slice_rad"],
    }


def _optimise_settings(
    eta_half: NDArray[np.float64], block_size: float, link: LinkSpec,
    epsilons: tuple[float, float, float, float],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Best key per pulse pair at each distance over the settings in _SEARCH_BOX.

    A Sobol point set (all distances at once) picks a start per distance; coordinate
    sweeps then try 9 values along each axis around the best point, halving the span each
    sweep. Deterministic: the Sobol set is unscrambled.
    """
    dim = len(_SEARCH_KEYS)
    points = qmc.Sobol(d=dim, scramble=False).random_base2(m=_SOBOL_LOG2)
    values = _sns_finite_key(
        _settings_from_unit(points[:, None, :]), eta_half[None, :], block_size, link, epsilons
    )
    best_index = np.argmax(values, axis=0)
    best = points[best_index]  # (distances, dim)
    best_value = values[best_index, np.arange(eta_half.size)]
    span = 0.25
    for _ in range(_SWEEPS):
        for axis in range(dim):
            trial = np.repeat(best[None, :, :], _SWEEP_POINTS.size, axis=0)
            trial[:, :, axis] = np.clip(best[None, :, axis] + span * _SWEEP_POINTS[:, None], 0, 1)
            trial_values = _sns_finite_key(
                _settings_from_unit(trial), eta_half[None, :], block_size, link, epsilons
            )
            pick = np.argmax(trial_values, axis=0)
            better = trial_values[pick, np.arange(eta_half.size)] > best_value
            best = np.where(better[:, None], trial[pick, np.arange(eta_half.size)], best)
            best_value = np.where(better, trial_values[pick, np.arange(eta_half.size)], best_value)
        span *= 0.5
    return np.asarray(best_value), np.asarray(best)


def _optimised_rate(
    d: NDArray[np.float64], eta_half: NDArray[np.float64], block_size: float, link: LinkSpec,
    epsilons: tuple[float, float, float, float],
) -> NDArray[np.float64]:
    """Optimised key per pulse pair at each distance (km).

    Up to _ANCHORS distances are optimised one by one. A longer curve is optimised at
    _ANCHORS anchor distances (quantiles of the request); each requested distance then takes
    the better of its two neighbouring anchors' settings, evaluated at its own distance, so
    the cost hardly grows with the number of points (settings vary slowly with distance).
    """
    if d.size <= _ANCHORS:
        return _optimise_settings(eta_half, block_size, link, epsilons)[0]
    anchors = np.unique(np.quantile(d, np.linspace(0.0, 1.0, _ANCHORS)))
    _, best = _optimise_settings(
        _half_link_transmittance(link, anchors), block_size, link, epsilons
    )
    upper = np.clip(np.searchsorted(anchors, d), 0, anchors.size - 1)
    lower = np.clip(upper - 1, 0, anchors.size - 1)
    return np.asarray(
        np.maximum(
            _sns_finite_key(_settings_from_unit(best[lower]), eta_half, block_size, link, epsilons),
            _sns_finite_key(_settings_from_unit(best[upper]), eta_half, block_size, link, epsilons),
        )
    )


def twin_field_finite_rate(
    link: LinkSpec,
    distance_km: ArrayLike,
    block_size: float,
    *,
    optimise: bool = False,
    epsilon_correctness: float = _DEFAULT_EPSILON,
    epsilon_privacy_amplification: float = _DEFAULT_EPSILON,
    epsilon_smoothing: float = _DEFAULT_EPSILON,
    failure_probability: float = _DEFAULT_EPSILON,
    z_window_probability: float = 0.75,
    decoy_intensities: tuple[float, float] = (0.1, 0.2),
    decoy_probabilities: tuple[float, float, float] = (0.2, 0.4, 0.4),
    phase_slice_rad: float = math.pi / 8.0,
) -> NDArray[np.float64]:
    """Finite-size SNS twin-field key rate, bits per pulse pair (time slot), vs distance (km).

    Implements the finite-pulse analysis of C. Jiang, Z.-W. Yu, X.-L. Hu, X.-B. Wang,
    "Unconditional security of sending or not sending twin-field quantum key distribution
    with finite pulses", Phys. Rev. Applied 12, 024061 (2019), arXiv:1904.00192: four
    intensities (vacuum, decoys μ1 < μ2 in X windows, signal μ_z sent with probability ε in
    Z windows), multiplicative Chernoff bounds on every count, the two-decoy bound on s1,
    the phase-flip bound from the X1 windows kept by phase post-selection (slice Δ), and
    the key length N_f = n1[1 − H(e1^ph)] − f n_t H(E_Z) − log2(2/ε_cor)
    − 2 log2(1/(√2 ε_PA ε̂)). The rate is N_f / N. No equation numbers are quoted: the
    paper's text could not be checked when this was written, and some details (listed in
    docs/validation-finite-twinfield.md) are our choices.

    ``block_size`` is N, the total number of pulse pairs (time windows) Alice and Bob send;
    the unit of the result is the same as :func:`twin_field_rate`'s, so the two curves
    share a plot. Charlie sits in the middle. Without ``optimise``: μ_z =
    ``link.intensities[0]``, ε = ``link.sending_probability`` and the keyword settings (p_z:
    probability of a Z window; decoy intensities (μ1, μ2); decoy probabilities (vacuum, μ1,
    μ2) in X windows; Δ in rad). With ``optimise`` all of them are chosen per distance.
    ``failure_probability`` is ξ of each Chernoff estimate (two-sided at ξ/2 per side).

    Raises ParameterError (naming the field) for block_size < 1 or not finite, an ε or ξ
    outside (0, 1), a negative distance, or settings outside their ranges.
    """
    d = distances(distance_km)
    n = check_block_size(block_size, "pulse pairs")
    epsilons = (
        check_open_probability("epsilon_correctness", epsilon_correctness),
        check_open_probability("epsilon_privacy_amplification", epsilon_privacy_amplification),
        check_open_probability("epsilon_smoothing", epsilon_smoothing),
        check_open_probability("failure_probability", failure_probability),
    )
    eta_half = _half_link_transmittance(link, d)
    if optimise:
        rate = _optimised_rate(d, eta_half, n, link, epsilons)
        # With fixed settings the rate does not grow with distance, so the settings found
        # for a farther distance achieve at least its rate at any nearer one: carrying the
        # best rate from far to near only removes the optimiser's local misses.
        order = np.argsort(d)
        rate[order] = np.maximum.accumulate(rate[order][::-1])[::-1]
    else:
        mu1, mu2 = (float(v) for v in decoy_intensities)
        if not (0.0 < mu1 < mu2):
            raise ParameterError(
                "decoy_intensities", f"must be 0 < mu1 < mu2, got {decoy_intensities!r}"
            )
        p0, p1, p2 = (float(v) for v in decoy_probabilities)
        if min(p0, p1, p2) <= 0.0 or abs(p0 + p1 + p2 - 1.0) > 1e-9:
            raise ParameterError(
                "decoy_probabilities",
                f"must be three probabilities > 0 summing to 1, got {decoy_probabilities!r}",
            )
        mu_z = float(link.intensities[0])
        if not (mu_z > 0.0):
            raise ParameterError("intensities", f"signal intensity must be > 0, got {mu_z!r}")
        if not (0.0 < phase_slice_rad <= math.pi):
            raise ParameterError(
                "phase_slice_rad", f"must be in (0, pi] rad, got {phase_slice_rad!r}"
            )
        settings = {
            "mu_z": np.array(mu_z),
            "epsilon": np.array(float(link.sending_probability)),
            "mu1": np.array(mu1),
            "mu2": np.array(mu2),
            "p_z": np.array(check_open_probability("z_window_probability", z_window_probability)),
            "p0": np.array(p0),
            "p1": np.array(p1),
            "p2": np.array(p2),
            "phase_slice_rad": np.array(float(phase_slice_rad)),
        }
        rate = _sns_finite_key(settings, eta_half, n, link, epsilons)
    return np.asarray(np.maximum(rate, 0.0), dtype=np.float64)
