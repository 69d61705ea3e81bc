"""Finite-size SNS twin-field key rate (Jiang, Yu, Hu, Wang, PR Applied 12, 024061, 2019).

Independent truths used here: exact Poisson tails (scipy) for the Chernoff intervals, a
photon-level Monte Carlo of Charlie's interference for the X1-window error model, the
asymptotic SNS rate of Wang, Yu, Hu (2018) (``twin_field_rate``) as the limit of infinite
pulses, and the PLOB bound.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import poisson

from qkdnet.errors import ParameterError
from qkdnet.quantum import plob_curve, twinfield
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.presets import preset_link
from qkdnet.quantum.twinfield import (
    FINITE_BLOCK_MEANING,
    chernoff_expected_bounds,
    chernoff_observed_bounds,
    twin_field_finite_rate,
    twin_field_rate,
)

TF = preset_link("twinfield")

links = st.builds(
    lambda loss, eff, pd, ed, mu, eps: preset_link(
        "twinfield",
        loss_db_per_km=loss,
        detector_efficiency=eff,
        dark_count_probability=pd,
        misalignment_error=ed,
        intensities=(mu, 0.1, 0.0),
        sending_probability=eps,
    ),
    st.floats(0.16, 0.25),
    st.floats(0.05, 0.9),
    st.floats(1e-10, 1e-6),
    st.floats(0.0, 0.1),
    st.floats(0.05, 0.8),
    st.floats(0.01, 0.4),
)
blocks = st.sampled_from([1e6, 1e8, 1e10, 1e12])


def test_block_meaning_is_total_pulses() -> None:
    assert FINITE_BLOCK_MEANING == "total pulse pairs N"


# --- the Chernoff intervals against exact Poisson tails --------------------------------------


@pytest.mark.parametrize("expected", [3.0, 20.0, 150.0, 2_000.0, 1e5])
def test_observed_interval_holds_with_probability_one_minus_xi(expected: float) -> None:
    xi = 1e-3
    lo, hi = (float(b[()]) for b in chernoff_observed_bounds(expected, xi))
    assert lo <= expected <= hi
    below = poisson.cdf(math.ceil(lo) - 1, expected) if lo > 0 else 0.0
    above = poisson.sf(math.floor(hi), expected)
    assert below <= xi / 2 and above <= xi / 2
    # Not absurdly loose either: each tail at least ξ/2 · 1e-3 (Chernoff is within a
    # modest factor of the exact tail, Poisson-exponent for Poisson-exponent).
    if expected >= 150.0:
        assert below >= xi / 2 * 1e-3 and above >= xi / 2 * 1e-3


@pytest.mark.parametrize("expected", [5.0, 40.0, 800.0])
def test_expected_interval_covers_the_truth(expected: float) -> None:
    # P[truth outside the interval built from X ~ Poisson(truth)], summed exactly over X.
    xi = 1e-2
    x = np.arange(0, int(expected + 20 * math.sqrt(expected) + 60))
    lo, hi = chernoff_expected_bounds(x.astype(float), xi)
    pmf = poisson.pmf(x, expected)
    assert pmf[lo > expected].sum() <= xi / 2
    assert pmf[hi < expected].sum() <= xi / 2


def test_chernoff_intervals_match_the_gaussian_width_for_large_counts() -> None:
    # For X ≫ ln(2/ξ) the exponent is (E − X)²/(2X): E = X ∓ √(2X ln(2/ξ)).
    x, xi = 1e12, 1e-10
    width = math.sqrt(2.0 * x * math.log(2.0 / xi))
    lo, hi = (float(b[()]) for b in chernoff_expected_bounds(x, xi))
    assert x - lo == pytest.approx(width, rel=1e-3)
    assert hi - x == pytest.approx(width, rel=1e-3)
    lo, hi = (float(b[()]) for b in chernoff_observed_bounds(x, xi))
    assert x - lo == pytest.approx(width, rel=1e-3)
    assert hi - x == pytest.approx(width, rel=1e-3)


def test_zero_counts() -> None:
    lo, hi = chernoff_expected_bounds(0.0, 1e-10)
    assert float(lo[()]) == 0.0
    assert float(hi[()]) == pytest.approx(math.log(2e10))


# --- the X1-window error model against a photon-level simulation ----------------------------


def test_phase_window_error_matches_monte_carlo() -> None:
    # Coherent pulses √x e^{iθ}, relative phase δ uniform in the slice, a 50:50 beam
    # splitter (port means x(1 ± cos δ)), each photon sent to the other port with
    # probability e_d, two threshold detectors with dark counts; count wrong single clicks.
    rng = np.random.default_rng(11)
    n, x, pd, ed, slice_rad = 400_000, 0.7, 0.01, 0.05, math.pi / 3
    delta = rng.uniform(-slice_rad / 2, slice_rad / 2, n)
    right = rng.poisson(x * (1 + np.cos(delta)))
    wrong = rng.poisson(x * (1 - np.cos(delta)))
    to_wrong = rng.binomial(right, ed)
    to_right = rng.binomial(wrong, ed)
    right, wrong = right - to_wrong + to_right, wrong - to_right + to_wrong
    click_right = (right > 0) | (rng.random(n) < pd)
    click_wrong = (wrong > 0) | (rng.random(n) < pd)
    observed = float((click_wrong & ~click_right).mean())
    p = float(twinfield._phase_window_error(np.array(x), pd, ed, np.array(slice_rad)))
    assert abs(observed - p) < 5 * math.sqrt(p * (1 - p) / n)


# --- the contract: below the asymptotic rate, tends to it, monotone, errors ------------------


@settings(max_examples=8, deadline=None)
@given(link=links, block=blocks)
def test_finite_rate_below_asymptotic(link: LinkSpec, block: float) -> None:
    d = np.linspace(0.0, 500.0, 26)
    finite = twin_field_finite_rate(link, d, block)
    asymptotic = twin_field_rate(link, d)
    assert np.all(finite <= asymptotic)


def test_optimised_finite_rate_below_optimised_asymptotic() -> None:
    d = np.linspace(0.0, 450.0, 19)
    asymptotic = twin_field_rate(TF, d, optimise=True)
    for block in (1e6, 1e9, 1e12):
        assert np.all(twin_field_finite_rate(TF, d, block, optimise=True) <= asymptotic)


def test_finite_rate_tends_to_the_asymptotic_rate() -> None:
    d = np.linspace(0.0, 350.0, 8)
    asymptotic = twin_field_rate(TF, d, optimise=True)
    assert np.all(asymptotic > 0.0)
    rates = [twin_field_finite_rate(TF, d, n, optimise=True) for n in (1e8, 1e10, 1e12, 1e14)]
    for smaller, larger in zip(rates, rates[1:], strict=False):
        assert np.all(larger >= smaller)
        assert np.any(larger > smaller)
    # Statistical terms vanish as N → ∞; p_z → 1, μ1, μ2 → 0 and Δ → 0 in the optimiser
    # close the gap left by the decoy bounds and the phase slice.
    ratio = twin_field_finite_rate(TF, d, 1e20, optimise=True) / asymptotic
    assert np.all(ratio > 0.97)


def test_infinite_pulse_limit_reproduces_the_asymptotic_formula() -> None:
    # A second route to the same number: decoy bounds with μ1, μ2 → 0, no fluctuations,
    # every window a Z window, Δ → 0 give s1 and e1 of Wang, Yu, Hu (2018) exactly.
    d = np.array([0.0, 100.0, 200.0, 300.0])
    finite = twin_field_finite_rate(
        TF, d, 1e40, z_window_probability=1 - 1e-9, decoy_intensities=(1e-4, 2e-4),
        phase_slice_rad=1e-4,
    )
    np.testing.assert_allclose(finite, twin_field_rate(TF, d), rtol=2e-3)


@settings(max_examples=8, deadline=None)
@given(link=links, block=blocks)
def test_rate_non_negative_and_non_increasing_with_distance(link: LinkSpec, block: float) -> None:
    d = np.linspace(0.0, 600.0, 61)
    rate = twin_field_finite_rate(link, d, block)
    assert np.all(rate >= 0.0)
    assert np.all(np.diff(rate) <= 0.0)


def test_optimised_rate_non_increasing_with_distance() -> None:
    d = np.linspace(600.0, 0.0, 40)  # any order in, one rate per distance out
    rate = twin_field_finite_rate(TF, d, 1e11, optimise=True)
    assert np.all(rate >= 0.0)
    assert np.all(np.diff(rate) >= 0.0)
    assert rate[-1] > 0.0 and rate[0] == 0.0


def test_long_curves_optimised_at_anchors_lose_little() -> None:
    # More than 48 distances: optimised at 48 anchors; 30 at a time: point by point.
    d = np.linspace(0.0, 440.0, 60)
    anchored = twin_field_finite_rate(TF, d, 1e11, optimise=True)
    pointwise = np.concatenate(
        [twin_field_finite_rate(TF, part, 1e11, optimise=True) for part in (d[:30], d[30:])]
    )
    key = pointwise > 0.0
    assert key.sum() > 40
    assert np.all(anchored[key] >= 0.99 * pointwise[key])


def test_ideal_and_hopeless_devices_give_clean_numbers() -> None:
    # No dark counts and no misalignment (error counts exactly 0), and a detector that
    # always clicks: finite numbers, no warnings, no key where there can be none.
    ideal = preset_link(
        "twinfield", dark_count_probability=0.0, misalignment_error=0.0, detector_efficiency=1.0
    )
    noisy = preset_link("twinfield", dark_count_probability=1.0)
    d = np.array([0.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rate = twin_field_finite_rate(ideal, d, 1e12, optimise=True)
        assert np.all(rate <= twin_field_rate(ideal, d, optimise=True))
        assert rate[1] > 0.0
        assert np.all(twin_field_finite_rate(noisy, d, 1e12, optimise=True) == 0.0)


def test_finite_rate_beats_plob_at_long_distance() -> None:
    d = np.array([100.0, 350.0, 400.0])
    rate = twin_field_finite_rate(TF, d, 1e13, optimise=True)
    plob = plob_curve(TF, d)
    assert rate[0] < plob[0]
    assert np.all(rate[1:] > plob[1:])


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("block_size", {"block_size": 0.5}),
        ("block_size", {"block_size": math.inf}),
        ("block_size", {"block_size": math.nan}),
        ("distance_km", {"distance_km": [-1.0]}),
        ("epsilon_correctness", {"epsilon_correctness": 0.0}),
        ("epsilon_privacy_amplification", {"epsilon_privacy_amplification": 1.0}),
        ("epsilon_smoothing", {"epsilon_smoothing": -1e-10}),
        ("failure_probability", {"failure_probability": 2.0}),
        ("z_window_probability", {"z_window_probability": 1.0}),
        ("decoy_intensities", {"decoy_intensities": (0.2, 0.1)}),
        ("decoy_probabilities", {"decoy_probabilities": (0.5, 0.5, 0.5)}),
        ("phase_slice_rad", {"phase_slice_rad": 0.0}),
    ],
)
def test_bad_input_names_the_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"distance_km": [10.0], "block_size": 1e10}
    args.update(kwargs)
    with pytest.raises(ParameterError) as info:
        twin_field_finite_rate(TF, **args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_usage_example_in_the_doc_runs() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "validation-finite-twinfield.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})
