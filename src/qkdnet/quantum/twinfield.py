"""Twin-field QKD, sending-or-not-sending (SNS) variant, asymptotic key rate.

Alice and Bob each send a phase-randomised coherent pulse of intensity μ with probability ε
(bit 1 for Alice, 0 for Bob) or nothing; an untrusted Charlie in the middle interferes the
pulses and announces single clicks. Wang, Yu, Hu, "Twin-field quantum key distribution with
large misalignment error", PRA 98, 062323 (2018), Eq. (1):

    R = 2ε(1−ε) μ e^−μ s_1 [1 − h(e_1^ph)] − f S_Z h(E_Z),

with the single-photon yield s_1 and phase-flip rate e_1^ph taken at their asymptotic
(infinite-decoy) values. Because only one photon has to cross half the link, R ∝ √η and the
rate crosses the PLOB bound at long distance.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import i0e

from qkdnet.quantum._common import binary_entropy, channel_transmittance, distances
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
    p_both, p_one, p_none = click_probabilities(eta * mu, pd)
    s_z = eps**2 * p_both + 2.0 * eps * (1.0 - eps) * p_one + (1.0 - eps) ** 2 * p_none
    errors = eps**2 * p_both + (1.0 - eps) ** 2 * p_none
    with np.errstate(divide="ignore", invalid="ignore"):
        e_z = np.where(s_z > 0.0, errors / s_z, 0.5)
    # Single photon from one side, vacuum from the other: exactly one click.
    s1 = eta * (1.0 - pd) + (1.0 - eta) * 2.0 * pd * (1.0 - pd)
    e1 = (eta * misalignment_error * (1.0 - pd) + (1.0 - eta) * pd * (1.0 - pd)) / s1
    untagged = 2.0 * eps * (1.0 - eps) * mu * np.exp(-mu) * s1
    leak = error_correction_efficiency * s_z * binary_entropy(e_z)
    return np.asarray(untagged * (1.0 - binary_entropy(e1)) - leak)


def twin_field_rate(
    link: LinkSpec, distance_km: ArrayLike, *, optimise: bool = False
) -> NDArray[np.float64]:
    """SNS twin-field key rate, bits per time slot, vectorised over the Alice–Bob distance (km).

    Charlie sits in the middle (L/2 each side, link's extra loss split evenly). μ =
    ``link.intensities[0]`` and ε = ``link.sending_probability``, or with ``optimise`` both
    chosen per distance on a grid (μ 0.01..1, ε 0.005..0.5).
    """
    d = distances(distance_km)
    eta_half = (
        channel_transmittance(link, d / 2.0)
        * 10.0 ** (link.extra_loss_db / 20.0)
        * link.detector_efficiency
    )
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
