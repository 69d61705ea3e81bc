"""BBM92 with a thermal SPDC source (Ma, Fung, Lo, PRA 76, 012307, 2007): limits and a
Monte Carlo of the coincidence gain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.quantum import bbm92
from qkdnet.quantum.presets import preset_link
from qkdnet.quantum.sources import polarisation_pair_number


def test_weak_source_gain_is_2_lambda_eta_a_eta_b_and_qber_is_misalignment() -> None:
    lam, ea, eb = 1e-6, 0.02, 0.05  # multi-pair errors grow as about 3λ
    gain, qber = bbm92.gain_and_qber(lam, ea, eb, 0.0, 0.02)
    assert gain == pytest.approx(2 * lam * ea * eb, rel=1e-4)
    assert qber == pytest.approx(0.02, rel=1e-4)


def test_coincidence_gain_matches_monte_carlo_of_thermal_pairs() -> None:
    # n pairs with P(n) = (n+1)λ^n/(1+λ)^(n+2); each photon of a pair survives its arm
    # independently; a coincidence needs at least one click on each side (or a dark count).
    rng = np.random.default_rng(11)
    lam, ea, eb, y0, trials = 0.4, 0.3, 0.2, 0.01, 300_000
    n_values = np.arange(60)
    p = polarisation_pair_number(lam, n_values)
    pairs = rng.choice(n_values, size=trials, p=p / p.sum())
    a = (rng.binomial(pairs, ea) > 0) | (rng.random(trials) < y0)
    b = (rng.binomial(pairs, eb) > 0) | (rng.random(trials) < y0)
    observed = float((a & b).mean())
    gain, _ = bbm92.gain_and_qber(lam, ea, eb, y0, 0.0)
    assert abs(observed - float(gain)) < 5 * math.sqrt(float(gain) * (1 - float(gain)) / trials)


def test_bbm92_rate_is_positive_and_falls_with_distance() -> None:
    link = preset_link("lim2014")
    d = np.arange(0.0, 300.0, 10.0)
    r = bbm92.bbm92_rate(link, d, optimise=True)
    assert r[0] > 0.0
    assert np.all(np.diff(r) <= 0.0)
