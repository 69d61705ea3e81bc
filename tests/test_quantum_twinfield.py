"""Sending-or-not-sending twin-field QKD: click statistics by Monte Carlo, √η scaling, and
the rate crossing the PLOB bound (Wang, Yu, Hu, PRA 98, 062323, 2018)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.quantum import plob_curve, secret_key_rate_curve, twinfield
from qkdnet.quantum.presets import preset_link

TF = preset_link("twinfield")


def test_single_click_probabilities_match_monte_carlo() -> None:
    # Phase-randomised coherent pulses of mean x at a 50:50 beam splitter, two threshold
    # detectors with dark counts: simulate photons and phases, count single clicks.
    rng = np.random.default_rng(7)
    n, x, pd = 400_000, 0.6, 0.01
    p_both, p_one, p_none = twinfield.click_probabilities(x, pd)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    cases = {
        "both": (x * (1 + np.cos(phi)), x * (1 - np.cos(phi)), p_both),
        "one": (np.full(n, x / 2), np.full(n, x / 2), p_one),
        "none": (np.zeros(n), np.zeros(n), p_none),
    }
    for m0, m1, p in cases.values():
        d0 = (rng.poisson(m0) > 0) | (rng.random(n) < pd)
        d1 = (rng.poisson(m1) > 0) | (rng.random(n) < pd)
        observed = float((d0 ^ d1).mean())
        assert abs(observed - float(p)) < 5 * math.sqrt(float(p) * (1 - float(p)) / n)


def test_rate_scales_as_square_root_of_transmittance() -> None:
    # Between 200 and 300 km the channel loses 20 dB; the TF rate only about 10 dB.
    r = secret_key_rate_curve("twin-field", TF, np.array([200.0, 300.0]), optimise=True)
    drop_db = 10 * math.log10(r[0] / r[1])
    assert 9.0 < drop_db < 13.0


def test_twin_field_crosses_the_plob_bound() -> None:
    d = np.arange(0.0, 440.0, 1.0)  # dark counts end the key near 450 km
    rate = secret_key_rate_curve("twin-field", TF, d, optimise=True)
    plob = plob_curve(TF, d)
    above = d[rate > plob]
    assert above.size > 0
    assert rate[100] < plob[100]  # below it at short distance
    crossing = above.min()
    assert 200.0 < crossing < 350.0
    assert np.all(rate[d > crossing] > plob[d > crossing])


def test_no_key_without_sending() -> None:
    assert twinfield.sns_rate_terms(0.5, 0.0, 0.01, 1e-8, 0.03, 1.1) == pytest.approx(0.0)
