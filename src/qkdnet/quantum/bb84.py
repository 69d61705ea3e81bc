"""Asymptotic key rates of BB84 with weak coherent pulses: decoy states, GLLP, efficient BB84.

All rates are bits per signal pulse, vectorised over distance (km), 0 where no key. The
key-rate formula is GLLP with decoy-state bounds (Lo, Ma, Chen, PRL 94, 230504, 2005):

    R = q { −Q_μ f h(E_μ) + Q_1 [1 − h(e_1)] },

with q = ½ for BB84 (half the pulses are sifted away) and the bounds on the single-photon
gain Q_1 and error e_1 of Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), keeping the Y0 term.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.errors import ParameterError
from qkdnet.quantum._common import (
    binary_entropy,
    channel_transmittance,
    distances,
    gain_and_qber,
    intensity_grid,
)
from qkdnet.quantum.detectors import background_yield
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.sources import multiphoton_probability

#: Error rate of a random (background) click.
E0 = 0.5


def _gllp(
    q_sift: float | NDArray[np.float64],
    f: float,
    mu: ArrayLike,
    gain_mu: NDArray[np.float64],
    qber_mu: NDArray[np.float64],
    y1: NDArray[np.float64],
    e1: NDArray[np.float64],
    y0: float | NDArray[np.float64] = 0.0,
) -> NDArray[np.float64]:
    """GLLP rate q{Q_0 − Q_μ f h(E_μ) + Q_1[1 − h(e_1)]}, Q_1 = Y_1 μ e^−μ, clipped at 0.

    Q_0 = Y_0 e^−μ (vacuum detections, secret because they carry no information) is 0
    unless a vacuum yield ``y0`` is given.
    """
    mu = np.asarray(mu, dtype=np.float64)
    q1 = np.maximum(y1, 0.0) * mu * np.exp(-mu)
    privacy = np.where((y1 > 0.0) & (e1 < 0.5), q1 * (1.0 - binary_entropy(e1)), 0.0)
    privacy = privacy + np.maximum(y0, 0.0) * np.exp(-mu)
    rate = q_sift * (privacy - gain_mu * f * binary_entropy(qber_mu))
    return np.asarray(np.maximum(rate, 0.0))


def decoy_bounds(
    mu: ArrayLike,
    nu1: ArrayLike,
    nu2: ArrayLike,
    gains: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
    qbers: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Lower bound on Y_1 and upper bound on e_1 from signal μ and decoys ν1 > ν2 ≥ 0.

    Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), Eqs. (34)–(35) (general two-decoy case; with
    ν2 = 0 it is their vacuum + weak decoy bound, Y0 term kept):

        Y0^L = max((ν1 Q_ν2 e^ν2 − ν2 Q_ν1 e^ν1)/(ν1 − ν2), 0)
        Y1^L = μ/(μν1 − μν2 − ν1² + ν2²) [Q_ν1 e^ν1 − Q_ν2 e^ν2 − (ν1² − ν2²)/μ² (Q_μ e^μ − Y0^L)]
        e1^U = (E_ν1 Q_ν1 e^ν1 − E_ν2 Q_ν2 e^ν2) / ((ν1 − ν2) Y1^L)

    Returns ``(y1_lower, e1_upper)``; e1 is 0.5 where Y1^L ≤ 0.
    """
    mu, nu1, nu2 = (np.asarray(x, dtype=np.float64) for x in (mu, nu1, nu2))
    q_mu, q_1, q_2 = gains
    e_mu, e_1, e_2 = qbers
    del e_mu
    a1 = q_1 * np.exp(nu1)
    a2 = q_2 * np.exp(nu2)
    y0 = np.maximum((nu1 * a2 - nu2 * a1) / (nu1 - nu2), 0.0)
    y1 = mu / (mu * nu1 - mu * nu2 - nu1**2 + nu2**2) * (
        a1 - a2 - (nu1**2 - nu2**2) / mu**2 * (q_mu * np.exp(mu) - y0)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = (e_1 * a1 - e_2 * a2) / ((nu1 - nu2) * y1)
    e1 = np.where(y1 > 0.0, np.clip(e1, 0.0, 0.5), 0.5)
    return np.asarray(y1), np.asarray(e1)


def _check_decoys(mu: float, nu1: float, nu2: float) -> None:
    if not (mu > nu1 + nu2 and nu1 > nu2 >= 0.0):
        raise ParameterError(
            "intensities",
            f"decoy BB84 needs signal > decoy + vacuum and decoy > vacuum >= 0, "
            f"got ({mu}, {nu1}, {nu2})",
        )


def decoy_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False, sifting: float = 0.5
) -> NDArray[np.float64]:
    """Vacuum + weak decoy BB84 (signal μ, decoy ν1, vacuum-like ν2), bits per pulse.

    Intensities are ``link.intensities`` = (μ, ν1, ν2); with ``optimise`` the signal μ is
    chosen per distance on a grid 0.01..1 (ν1, ν2 kept), as in Ma et al. (2005), Sec. VI.
    ``sifting`` is q (½ for BB84). Bounds: :func:`decoy_bounds`.
    """
    d = distances(distance_km)
    if len(link.intensities) < 3:
        raise ParameterError("intensities", "decoy BB84 needs three intensities (μ, ν1, ν2)")
    mu0, nu1, nu2 = link.intensities[:3]
    eta = channel_transmittance(link, d)
    mus = intensity_grid(max(nu1 + nu2, 0.0) + 0.01, 1.0, 100) if optimise else np.array([[mu0]])
    _check_decoys(float(mus.min()), nu1, nu2)
    q_mu, e_mu = gain_and_qber(link, mus, eta)
    q_1, e_1 = gain_and_qber(link, nu1, eta)
    q_2, e_2 = gain_and_qber(link, nu2, eta)
    y1, e1 = decoy_bounds(mus, nu1, nu2, (q_mu, q_1, q_2), (e_mu, e_1, e_2))
    rate = _gllp(sifting, link.error_correction_efficiency, mus, q_mu, e_mu, y1, e1)
    return np.asarray(rate.max(axis=0))


def _one_decoy_grid(
    link: LinkSpec, eta: NDArray[np.float64], mus: NDArray[np.float64], nu: float
) -> NDArray[np.float64]:
    q_mu, e_mu = gain_and_qber(link, mus, eta)
    q_nu, _ = gain_and_qber(link, nu, eta)
    a_mu = q_mu * np.exp(mus)
    y1 = mus / (mus * nu - nu**2) * (
        q_nu * np.exp(nu) - nu**2 / mus**2 * a_mu - (mus**2 - nu**2) / mus**2 * e_mu * a_mu / E0
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(y1 > 0.0, np.clip(e_mu * a_mu / (mus * y1), 0.0, 0.5), 0.5)
    rate = _gllp(0.5, link.error_correction_efficiency, mus, q_mu, e_mu, y1, e1)
    return np.asarray(rate.max(axis=0))


def one_decoy_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """One-decoy BB84 (signal μ, decoy ν, no vacuum), asymptotic, bits per pulse.

    Y0 is bounded from the signal's errors, Y0 ≤ E_μ Q_μ e^μ / e0 (Ma, Qi, Zhao, Lo, PRA 72,
    012326, 2005, Sec. V.A, Eqs. (42)–(43)):

        Y1^L = μ/(μν − ν²) [Q_ν e^ν − (ν²/μ²) Q_μ e^μ − ((μ² − ν²)/μ²) E_μ Q_μ e^μ / e0]
        e1^U = E_μ Q_μ e^μ / (μ Y1^L)

    Uses (μ, ν) = ``link.intensities[:2]``; ``optimise`` picks μ (grid 0.02..1) and ν (grid
    0.01..0.5, ν < μ) per distance.
    """
    d = distances(distance_km)
    if len(link.intensities) < 2:
        raise ParameterError("intensities", "one-decoy BB84 needs two intensities (μ, ν)")
    mu0, nu0 = link.intensities[:2]
    eta = channel_transmittance(link, d)
    if not optimise:
        if not (mu0 > nu0 > 0.0):
            raise ParameterError(
                "intensities", f"one-decoy BB84 needs μ > ν > 0, got ({mu0}, {nu0})"
            )
        return _one_decoy_grid(link, eta, np.array([[mu0]]), nu0)
    best = np.zeros_like(d)
    for nu in np.geomspace(0.01, 0.5, 24):
        mus = np.linspace(nu + 0.01, 1.0, 60)[:, None]
        best = np.maximum(best, _one_decoy_grid(link, eta, mus, float(nu)))
    return best


def no_decoy_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """BB84 with weak coherent pulses and no decoys (GLLP), bits per pulse.

    Worst case: every multi-photon pulse is detected and known to Eve, so
    Q_1 ≥ Q_μ − P_multi(μ) and e_1 ≤ E_μ Q_μ / Q_1. Gottesman, Lo, Lütkenhaus, Preskill, QIC 4,
    325 (2004); in the form of Lo, Ma, Chen, PRL 94, 230504 (2005), Eqs. (12)–(13):

        R = q Q_μ {−f H(E_μ) + Ω [1 − H(E_μ/Ω)]},   1 − Ω = Δ = P_multi(μ)/Q_μ,

    with q = ½ and f = ``link.error_correction_efficiency`` (q does not move the reach; on GYS
    f = 1 gives 43.8 km instead of 40.2 km).
    Uses μ = ``link.intensities[0]``; ``optimise`` picks μ per distance (geometric grid
    0.001..1; the optimum is μ ≈ 0.58 η with η the channel × detector transmittance,
    i.e. μ = O(η) as LMC state). On the GYS set this reaches 40.2 km, not the "about 30 km"
    of REFERENCES.md; docs/validation.md records what was checked.
    """
    d = distances(distance_km)
    eta = channel_transmittance(link, d)
    mus = np.geomspace(1e-3, 1.0, 200)[:, None] if optimise else np.array([[link.intensities[0]]])
    q_mu, e_mu = gain_and_qber(link, mus, eta)
    q1 = q_mu - multiphoton_probability(mus)
    with np.errstate(divide="ignore", invalid="ignore"):
        y1 = q1 / (mus * np.exp(-mus))
        e1 = np.where(q1 > 0.0, np.clip(e_mu * q_mu / q1, 0.0, 0.5), 0.5)
    rate = _gllp(0.5, link.error_correction_efficiency, mus, q_mu, e_mu, y1, e1)
    return np.asarray(rate.max(axis=0))


def efficient_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """Efficient BB84 with biased basis choice, decoy bounds, bits per pulse.

    Alice and Bob pick Z with probability p = ``link.basis_probability_z``; both bases keep
    their key (errors estimated separately in each), so the sifting factor is p² + (1 − p)²
    instead of ½ — Lo, Chau, Ardehali, J. Cryptology 18, 133 (2005). In the asymptotic limit
    p → 1 the rate approaches twice that of :func:`decoy_rate`.
    """
    p = link.basis_probability_z
    return decoy_rate(link, distance_km, optimise=optimise, sifting=p**2 + (1.0 - p) ** 2)


def infinite_decoy_rate(
    link: LinkSpec,
    distance_km: ArrayLike,
    *,
    optimise: bool = False,
    sifting: float = 0.5,
    count_vacuum: bool = False,
) -> NDArray[np.float64]:
    """Decoy BB84 with exact single-photon yield and error (the infinite-decoy limit).

    Y_1 = Y0 + η − Y0 η, e_1 = (e0 Y0 + e_d η)/Y_1 (η = channel × detector transmittance);
    Lo, Ma, Chen, PRL 94, 230504 (2005). The upper envelope of every finite-decoy rate.
    ``sifting`` is q (½ for BB84, → 1 for efficient BB84); ``count_vacuum`` adds the
    vacuum term Q_0 = Y0 e^−μ that Lo (2005) and Lim et al. (2014) count as secret (the
    formula of REFERENCES.md, which we follow by default, leaves it out).
    """
    d = distances(distance_km)
    eta = channel_transmittance(link, d) * link.detector_efficiency
    mus = intensity_grid(0.01, 1.0, 100) if optimise else np.array([[link.intensities[0]]])
    q_mu, e_mu = gain_and_qber(link, mus, channel_transmittance(link, d))
    y0 = background_yield(link.dark_count_probability)
    y1 = y0 + eta - y0 * eta
    e1 = (E0 * y0 + link.misalignment_error * eta) / y1
    y1 = np.broadcast_to(y1, q_mu.shape)
    e1 = np.broadcast_to(e1, q_mu.shape)
    rate = _gllp(sifting, link.error_correction_efficiency, mus, q_mu, e_mu, y1, e1,
                 y0 if count_vacuum else 0.0)
    return np.asarray(rate.max(axis=0))
