"""Hypothesis properties of every protocol: rates are never negative, never increase with
distance, and (for every repeaterless protocol) stay below the PLOB bound."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.quantum import (
    FINITE_KEY_PROTOCOLS,
    PROTOCOLS,
    REPEATERLESS_PROTOCOLS,
    LinkSpec,
    finite_key_rate_curve,
    plob_curve,
    secret_key_rate_curve,
)

DISTANCES = np.concatenate([np.linspace(0.0, 50.0, 26), np.linspace(52.0, 400.0, 88)])


@st.composite
def links(draw: st.DrawFn) -> LinkSpec:
    mu = draw(st.floats(0.2, 0.9))
    nu = draw(st.floats(0.02, 0.15))
    return LinkSpec(
        loss_db_per_km=draw(st.floats(0.15, 0.4)),
        extra_loss_db=draw(st.floats(0.0, 5.0)),
        detector_efficiency=draw(st.floats(0.05, 0.9)),
        dark_count_probability=draw(st.floats(1e-9, 1e-5)),
        afterpulse_probability=draw(st.floats(0.0, 0.05)),
        misalignment_error=draw(st.floats(0.0, 0.05)),
        error_correction_efficiency=draw(st.floats(1.0, 1.5)),
        intensities=(mu, nu, draw(st.sampled_from([0.0, 2e-4]))),
        intensity_probabilities=(0.8, 0.1, 0.1),
        basis_probability_z=draw(st.floats(0.5, 0.95)),
        mean_pair_number=draw(st.floats(0.001, 0.5)),
        sending_probability=draw(st.floats(0.01, 0.3)),
        modulation_variance_snu=draw(st.floats(0.5, 50.0)),
        excess_noise_snu=draw(st.floats(0.0, 0.05)),
        reconciliation_efficiency=draw(st.floats(0.85, 1.0)),
        electronic_noise_snu=draw(st.floats(0.0, 0.1)),
        homodyne_efficiency=draw(st.floats(0.4, 1.0)),
    )


@settings(max_examples=12, deadline=None)
@given(link=links(), optimise=st.booleans())
def test_rates_are_non_negative_and_non_increasing(link: LinkSpec, optimise: bool) -> None:
    for protocol in PROTOCOLS:
        rate = secret_key_rate_curve(protocol, link, DISTANCES, optimise=optimise)
        assert np.all(np.isfinite(rate)), protocol
        assert np.all(rate >= 0.0), protocol
        # Allow rounding at the 1e-12 relative level only.
        assert np.all(np.diff(rate) <= 1e-12 * rate[:-1] + 1e-300), protocol


@settings(max_examples=12, deadline=None)
@given(link=links())
def test_repeaterless_protocols_stay_below_plob(link: LinkSpec) -> None:
    plob = plob_curve(link, DISTANCES)
    for protocol in REPEATERLESS_PROTOCOLS:
        rate = secret_key_rate_curve(protocol, link, DISTANCES, optimise=True)
        assert np.all(rate <= plob), protocol


@settings(max_examples=6, deadline=None)
@given(link=links(), block=st.sampled_from([1e6, 1e9, 1e12]))
def test_finite_key_rates_are_non_negative_and_below_plob(link: LinkSpec, block: float) -> None:
    # Every finite-key theory, optimised; the twin-field one is not bounded by PLOB (it
    # must beat it), only by being non-negative.
    d = DISTANCES[::8]
    plob = plob_curve(link, d)
    for protocol in FINITE_KEY_PROTOCOLS:
        rate = finite_key_rate_curve(protocol, link, d, block)
        assert np.all(np.isfinite(rate)) and np.all(rate >= 0.0), protocol
        if protocol in REPEATERLESS_PROTOCOLS:
            assert np.all(rate <= plob), protocol
