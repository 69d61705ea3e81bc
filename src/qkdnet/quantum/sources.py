"""Light sources: weak coherent pulses, SPDC pair sources, Gaussian-modulated coherent states.

Photon-number statistics are returned as arrays; samplers take ``rng: np.random.Generator``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import gammaln

from qkdnet.errors import ParameterError


def _mean(name: str, value: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0.0):
        raise ParameterError(name, "must be a finite mean photon number >= 0")
    return arr


def poisson_photon_number(mean_photon_number: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """P(n) = e^−μ μ^n / n! of a phase-randomised weak coherent pulse of mean μ photons.

    Lo, Ma, Chen, PRL 94, 230504 (2005). Broadcasts over μ and n.
    """
    mu = _mean("mean_photon_number", mean_photon_number)
    k = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = -mu + k * np.log(mu) - gammaln(k + 1.0)
        p = np.exp(logp)
    return np.asarray(np.where(mu == 0.0, (k == 0).astype(np.float64), p))


def multiphoton_probability(mean_photon_number: ArrayLike) -> NDArray[np.float64]:
    """Probability 1 − (1 + μ)e^−μ that a weak coherent pulse holds two or more photons."""
    mu = _mean("mean_photon_number", mean_photon_number)
    return np.asarray(-np.expm1(-mu) - mu * np.exp(-mu))


def thermal_photon_number(mean_pair_number: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """P(n) = λ^n/(1+λ)^(n+1): pairs in one mode of a single-mode SPDC source of mean λ pairs.

    Thermal (Bose–Einstein) statistics of one Schmidt mode; Ma, Fung, Lo, PRA 76, 012307 (2007).
    """
    lam = _mean("mean_pair_number", mean_pair_number)
    k = np.asarray(n, dtype=np.float64)
    return np.asarray(lam**k / (1.0 + lam) ** (k + 1.0))


def polarisation_pair_number(mean_pair_number: ArrayLike, n: ArrayLike) -> NDArray[np.float64]:
    """P(n) = (n+1) λ^n/(1+λ)^(n+2) of a polarisation-entangled SPDC source (two modes).

    λ is half the expected number of pairs per pulse (mean pairs = 2λ). Ma, Fung, Lo, PRA 76,
    012307 (2007), Eq. (3).
    """
    lam = _mean("mean_pair_number", mean_pair_number)
    k = np.asarray(n, dtype=np.float64)
    return np.asarray((k + 1.0) * lam**k / (1.0 + lam) ** (k + 2.0))


def sample_weak_coherent_photons(
    mean_photon_number: ArrayLike, size: int, rng: np.random.Generator
) -> NDArray[np.int64]:
    """Photon numbers of ``size`` phase-randomised weak coherent pulses (Poisson)."""
    mu = _mean("mean_photon_number", mean_photon_number)
    return np.asarray(rng.poisson(mu, size=size), dtype=np.int64)


def sample_gaussian_modulation(
    modulation_variance_snu: float, size: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Alice's displacements (x, p), shape (size, 2), for Gaussian-modulated coherent states.

    Each quadrature is drawn from N(0, V_A) in shot-noise units; the states Bob receives have
    quadrature variance V = V_A + 1 (GG02: Grosshans & Grangier, PRL 88, 057902, 2002).
    """
    if not (modulation_variance_snu >= 0.0) or not np.isfinite(modulation_variance_snu):
        raise ParameterError("modulation_variance_snu", "must be a finite variance >= 0 SNU")
    return rng.normal(0.0, np.sqrt(modulation_variance_snu), size=(size, 2))
