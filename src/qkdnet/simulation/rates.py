"""Secret key rate and QBER of each scenario link, from the quantum layer.

The rate is ``qkdnet.quantum.secret_key_rate_per_pulse(protocol, link)`` (bits per pulse,
asymptotic) times the repetition rate (Hz). The QBER is the signal-state error rate of the
decoy-state model, E_mu = (e0 Y0 + e_d (1 - exp(-eta mu))) / Q_mu (Lo, Ma, Chen, PRL 94,
230504 (2005), eq. 3), used for telemetry and alarms. A measured ``key_rate_bps`` or
``qber`` in the scenario takes precedence.
"""

from __future__ import annotations

import math

import numpy as np

from qkdnet.quantum import secret_key_rate_per_pulse
from qkdnet.scenario import LinkSpecModel


def signal_qber(link: LinkSpecModel) -> float:
    """QBER of the signal pulses, E_mu of Lo-Ma-Chen 2005 (eq. 3), 0..0.5."""
    spec = link.to_link_spec()
    eta = spec.total_transmittance
    mu = spec.intensities[0]
    y0 = 2.0 * spec.dark_count_probability
    detected = 1.0 - math.exp(-eta * mu)
    q_mu = y0 + detected - y0 * detected
    if q_mu <= 0.0:
        return 0.5
    return min(0.5, (0.5 * y0 + spec.misalignment_error * detected) / q_mu)


def link_rate_and_qber(link: LinkSpecModel) -> tuple[float, float]:
    """(secret key rate in bits/s, QBER) of a scenario link in normal operation."""
    if link.key_rate_bps is not None:
        rate_bps = float(link.key_rate_bps)
    else:
        spec = link.to_link_spec()
        per_pulse = secret_key_rate_per_pulse(link.protocol, spec, optimise=link.optimise)
        rate_bps = per_pulse * spec.repetition_rate_hz
    qber = float(link.qber) if link.qber is not None else signal_qber(link)
    return rate_bps, qber


def link_rates(links: tuple[LinkSpecModel, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (rate bits/s, QBER) for a tuple of links, in order."""
    out = [link_rate_and_qber(link) for link in links]
    rates = np.array([r for r, _ in out], dtype=np.float64)
    qbers = np.array([q for _, q in out], dtype=np.float64)
    return rates, qbers
