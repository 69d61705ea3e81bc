"""Secret key rate and QBER of each scenario link, from the quantum layer.

The quantum layer's ``qkdnet.quantum.secret_key_rate_per_pulse(protocol, link)`` is used
when it exists. Until it lands, a TEMPORARY stand-in computes the asymptotic decoy-state
BB84 rate (Lo, Ma, Chen, PRL 94, 230504 (2005), eqs. 1-4, infinite decoys, efficient
basis choice) for every protocol. Measured rates in the scenario (``key_rate_bps``,
``qber``) always take precedence.
"""

from __future__ import annotations

import math

import numpy as np

from qkdnet.scenario import LinkSpecModel


def _h2(x: float) -> float:
    if x <= 0.0 or x >= 1.0:
        return 0.0
    return -x * math.log2(x) - (1 - x) * math.log2(1 - x)


def _temporary_rate_per_pulse_and_qber(link: LinkSpecModel) -> tuple[float, float]:
    """TEMPORARY: asymptotic decoy BB84 (Lo-Ma-Chen 2005), secret bits per pulse and QBER."""
    spec = link.to_link_spec()
    eta = spec.total_transmittance
    mu = spec.intensities[0]
    p_signal = spec.intensity_probabilities[0]
    y0 = 2.0 * spec.dark_count_probability
    e0 = 0.5
    ed = spec.misalignment_error
    y1 = y0 + eta - y0 * eta
    e1 = (e0 * y0 + ed * eta) / y1
    q1 = y1 * mu * math.exp(-mu)
    q_mu = y0 + 1.0 - math.exp(-eta * mu)
    e_mu = (e0 * y0 + ed * (1.0 - math.exp(-eta * mu))) / q_mu
    sift = spec.basis_probability_z**2 + (1 - spec.basis_probability_z) ** 2
    rate = sift * p_signal * (
        q1 * (1.0 - _h2(e1)) - q_mu * spec.error_correction_efficiency * _h2(e_mu)
    )
    return max(rate, 0.0), e_mu


def link_rate_and_qber(link: LinkSpecModel) -> tuple[float, float]:
    """(secret key rate in bits/s, QBER) of a scenario link in normal operation.

    Measured values in the scenario win; otherwise the quantum layer's rate per pulse
    times the repetition rate (Hz).
    """
    rate_per_pulse: float | None = None
    qber: float | None = None
    try:  # the quantum layer's function, once H1's code has landed
        from qkdnet import quantum

        fn = getattr(quantum, "secret_key_rate_per_pulse", None)
        if fn is not None:
            rate_per_pulse = float(fn(link.protocol, link.to_link_spec()))
    except Exception:  # pragma: no cover - fall back to the stand-in on any mismatch
        rate_per_pulse = None
    temp_rate, temp_qber = _temporary_rate_per_pulse_and_qber(link)
    if rate_per_pulse is None:
        rate_per_pulse = temp_rate
    qber = temp_qber
    rate_bps = rate_per_pulse * link.repetition_rate_hz
    if link.key_rate_bps is not None:
        rate_bps = link.key_rate_bps
    if link.qber is not None:
        qber = link.qber
    return float(rate_bps), float(qber)


def link_rates(links: tuple[LinkSpecModel, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (rate bits/s, QBER) for a tuple of links, in order."""
    out = [link_rate_and_qber(link) for link in links]
    rates = np.array([r for r, _ in out], dtype=np.float64)
    qbers = np.array([q for _, q in out], dtype=np.float64)
    return rates, qbers
