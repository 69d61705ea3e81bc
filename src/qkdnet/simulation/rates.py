"""Secret key rate and QBER of each scenario link, from the quantum layer.

The rate is ``qkdnet.quantum.secret_key_rate_per_pulse(protocol, link)`` (bits per pulse,
asymptotic) times the repetition rate (Hz). The QBER is the signal-state error rate of the
decoy-state model, E_mu = (e0 Y0 + e_d (1 - exp(-eta mu))) / Q_mu (Lo, Ma, Chen, PRL 94,
230504 (2005), eq. 3), used for telemetry and alarms. A measured ``key_rate_bps`` or
``qber`` in the scenario takes precedence. Links with ``mode: pipeline`` are measured
instead by running the event-level simulation and post-processing pipeline.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from qkdnet.quantum import LinkSpec, secret_key_rate_curve, secret_key_rate_per_pulse
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


def pipeline_rate_and_qber(link: LinkSpecModel, rng: np.random.Generator) -> tuple[float, float]:
    """(secret key rate in bits/s, QBER) measured end to end: ``link.pipeline_pulses``
    pulses through the event-level sampler (qkdnet.quantum.sampling) and the whole
    post-processing pipeline (qkdnet.postprocessing.pipeline: sifting, Lim et al. 2014
    finite-key estimation, Cascade, verification, Toeplitz amplification, authentication
    repaid). The net secret bits per pulse times the repetition rate; 0 if the block
    aborts (then the QBER is that of the signal pulses)."""
    from qkdnet.postprocessing.pipeline import Pipeline
    from qkdnet.quantum.sampling import simulate_block

    spec = link.to_link_spec()
    quantum_rng, classical_rng, auth_rng = rng.spawn(3)
    protocol = link.protocol if link.protocol in ("bb84-decoy", "bbm92") else "bb84-decoy"
    records = simulate_block(spec, link.pipeline_pulses, quantum_rng, protocol=protocol)
    pipeline = Pipeline(rng=classical_rng, auth_rng=auth_rng)
    result = pipeline.process(records)
    rate_bps = result.net_secret_bits / link.pipeline_pulses * spec.repetition_rate_hz
    qber = result.qber if result.qber is not None else signal_qber(link)
    return float(rate_bps), float(qber)


def link_rate_and_qber(
    link: LinkSpecModel, rng: np.random.Generator | None = None
) -> tuple[float, float]:
    """(secret key rate in bits/s, QBER) of a scenario link in normal operation.

    ``mode: pipeline`` links are measured with :func:`pipeline_rate_and_qber` (``rng``
    drives it; default seeded 0)."""
    if link.key_rate_bps is not None:
        rate_bps = float(link.key_rate_bps)
    elif link.mode == "pipeline":
        rate_bps, qber = pipeline_rate_and_qber(link, rng or np.random.default_rng(0))
        return rate_bps, float(link.qber) if link.qber is not None else qber
    else:
        spec = link.to_link_spec()
        per_pulse = secret_key_rate_per_pulse(link.protocol, spec, optimise=link.optimise)
        rate_bps = per_pulse * spec.repetition_rate_hz
    qber = float(link.qber) if link.qber is not None else signal_qber(link)
    return rate_bps, qber


def link_rates(
    links: tuple[LinkSpecModel, ...], rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Arrays (rate bits/s, QBER) for a tuple of links, in order; ``rng`` is split into
    one stream per link for the pipeline mode."""
    streams = (rng or np.random.default_rng(0)).spawn(len(links))
    rates = np.zeros(len(links), dtype=np.float64)
    qbers = np.zeros(len(links), dtype=np.float64)
    # Links that differ only in length share one vectorised call of the quantum layer.
    groups: dict[tuple[str, bool, LinkSpec], list[int]] = {}
    for i, link in enumerate(links):
        if link.key_rate_bps is None and link.mode == "rate":
            base = replace(link.to_link_spec(), length_km=0.0)
            groups.setdefault((link.protocol, link.optimise, base), []).append(i)
        else:
            rates[i], qbers[i] = link_rate_and_qber(link, streams[i])
    for (protocol, optimise, spec), idx in groups.items():
        lengths = [links[i].length_km for i in idx]
        per_pulse = secret_key_rate_curve(protocol, spec, lengths, optimise=bool(optimise))
        rates[idx] = np.asarray(per_pulse) * spec.repetition_rate_hz
        for i in idx:
            link = links[i]
            qbers[i] = float(link.qber) if link.qber is not None else signal_qber(link)
    return rates, qbers
