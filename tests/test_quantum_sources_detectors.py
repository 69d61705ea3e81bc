"""Photon statistics and detector models against closed forms and seeded Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qkdnet.errors import ParameterError
from qkdnet.quantum import detectors, sources


def _binomial_bound(p: float, n: int, sigmas: float = 5.0) -> float:
    return sigmas * math.sqrt(p * (1.0 - p) / n)


def test_poisson_sums_to_one_and_has_mean_mu() -> None:
    n = np.arange(60)
    for mu in (0.0, 0.1, 0.5, 5.0):
        p = sources.poisson_photon_number(mu, n)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert (n * p).sum() == pytest.approx(mu, abs=1e-10)


def test_multiphoton_probability_matches_the_tail_of_the_poisson_sum() -> None:
    mu = np.array([0.01, 0.1, 0.5, 1.0])
    tail = 1.0 - sources.poisson_photon_number(mu[:, None], np.array([0, 1])).sum(axis=1)
    assert np.allclose(sources.multiphoton_probability(mu), tail, rtol=1e-12)


def test_thermal_statistics_mean_and_normalisation() -> None:
    n = np.arange(400)
    lam = 0.3
    p1 = sources.thermal_photon_number(lam, n)
    assert p1.sum() == pytest.approx(1.0, abs=1e-12)
    assert (n * p1).sum() == pytest.approx(lam, rel=1e-10)
    # Two-mode (polarisation-entangled) source: mean pairs 2λ (Ma, Fung, Lo 2007).
    p2 = sources.polarisation_pair_number(lam, n)
    assert p2.sum() == pytest.approx(1.0, abs=1e-12)
    assert (n * p2).sum() == pytest.approx(2 * lam, rel=1e-10)


def test_weak_coherent_sampler_is_poisson() -> None:
    rng = np.random.default_rng(1)
    k = sources.sample_weak_coherent_photons(0.5, 200_000, rng)
    p0 = math.exp(-0.5)
    assert abs((k == 0).mean() - p0) < _binomial_bound(p0, k.size)


def test_gaussian_modulation_has_variance_va() -> None:
    rng = np.random.default_rng(2)
    x = sources.sample_gaussian_modulation(4.0, 100_000, rng)
    assert x.shape == (100_000, 2)
    # Sample variance of n normals: relative standard deviation sqrt(2/n).
    assert np.allclose(x.var(axis=0), 4.0, rtol=5 * math.sqrt(2 / 100_000))


def test_click_probability_matches_monte_carlo_of_two_threshold_detectors() -> None:
    rng = np.random.default_rng(3)
    n, m, eta, pdc = 400_000, 0.8, 0.3, 0.02
    photons = rng.poisson(m, n)
    detected = rng.binomial(photons, eta) > 0
    dark = (rng.random(n) < pdc) | (rng.random(n) < pdc)
    p = float(detectors.click_probability(m, eta, pdc))
    assert abs((detected | dark).mean() - p) < _binomial_bound(p, n)


def test_error_rate_tends_to_misalignment_and_to_half_on_dark_counts() -> None:
    gain, qber = detectors.detection_statistics(
        np.array([10.0, 0.0]), detector_efficiency=1.0, dark_count_probability=1e-6,
        misalignment_error=0.02,
    )
    assert qber[0] == pytest.approx(0.02, abs=1e-5)
    assert qber[1] == pytest.approx(0.5)
    assert gain[1] == pytest.approx(detectors.background_yield(1e-6))


def test_afterpulses_add_clicks_and_errors() -> None:
    g0, e0 = detectors.detection_statistics(0.1, detector_efficiency=0.1,
                                            dark_count_probability=1e-6, misalignment_error=0.01)
    g1, e1 = detectors.detection_statistics(0.1, detector_efficiency=0.1,
                                            dark_count_probability=1e-6, misalignment_error=0.01,
                                            afterpulse_probability=0.04)
    assert g1 == pytest.approx(1.04 * g0)
    assert e1 > e0


def test_dead_time_saturates_the_count_rate_at_one_over_tau() -> None:
    # Non-paralysable detector: counted rate R/(1 + Rτ) → 1/τ.
    tau, f = 50e-9, 1e9
    gain, _ = detectors.detection_statistics(
        np.array([1e3, 1e6]), detector_efficiency=1.0, dark_count_probability=0.0,
        misalignment_error=0.0, dead_time_s=tau, repetition_rate_hz=f,
    )
    assert gain[-1] * f == pytest.approx(1.0 / tau / (1.0 + 1.0 / (f * tau)), rel=1e-9)


def test_bad_probabilities_are_rejected() -> None:
    with pytest.raises(ParameterError, match="dark_count_probability"):
        detectors.background_yield(1.5)
    with pytest.raises(ParameterError, match="afterpulse_probability"):
        detectors.afterpulse_factor(-0.1)
