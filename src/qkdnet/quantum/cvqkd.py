"""Continuous-variable QKD: Gaussian-modulated coherent states, homodyne detection, reverse
reconciliation, collective attacks (asymptotic Holevo bound), trusted detector noise.

Formulas: Lodewyck et al., PRA 76, 042305 (2007), Eqs. (2)–(12); Laudenbach et al., Adv.
Quantum Technol. 1, 1800011 (2018), Sec. 6. All variances are in shot-noise units (SNU).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkdnet.quantum._common import channel_transmittance, distances
from qkdnet.quantum.link import LinkSpec

#: Smallest channel transmittance (100 dB) at which the rate is evaluated.
MIN_TRANSMITTANCE = 1e-10


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
    modulation_variance_snu: float,
    excess_noise_snu: float,
    electronic_noise_snu: float,
    homodyne_efficiency: float,
) -> NDArray[np.float64]:
    """Alice–Bob mutual information I_AB, bits per symbol, homodyne detection.

    I_AB = ½ log2((V + χ_tot)/(1 + χ_tot)), V = V_A + 1, χ_tot = χ_line + χ_hom/T,
    χ_line = 1/T − 1 + ξ, χ_hom = (1 + v_el)/η − 1. Lodewyck et al. (2007), Eqs. (2)–(4).
    """
    t = np.asarray(transmittance, dtype=np.longdouble)
    v = np.asarray(modulation_variance_snu, dtype=np.longdouble) + 1.0
    with np.errstate(divide="ignore"):
        chi_line = 1.0 / t - 1.0 + excess_noise_snu
        chi_hom = (1.0 + electronic_noise_snu) / homodyne_efficiency - 1.0
        chi_tot = chi_line + chi_hom / t
        return np.asarray(0.5 * np.log2((v + chi_tot) / (1.0 + chi_tot)), dtype=np.float64)


def holevo_bound(
    transmittance: ArrayLike,
    modulation_variance_snu: float,
    excess_noise_snu: float,
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
    chi_line = 1.0 / t - 1.0 + excess_noise_snu
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
    variances = np.geomspace(0.5, 100.0, 80)[:, None] if optimise else None
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
