"""The public API of qkdnet.quantum: names, shapes, errors, and agreement with the modules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import qkdnet.quantum as quantum
from qkdnet.errors import ParameterError
from qkdnet.quantum import (
    PROTOCOLS,
    LinkSpec,
    secret_key_rate_curve,
    secret_key_rate_per_pulse,
)
from qkdnet.quantum.presets import PRESETS, preset_link

REQUIRED = {"bb84-decoy", "bb84-one-decoy", "bb84-no-decoy", "bb84-efficient", "bbm92",
            "cv-qkd", "twin-field"}


def test_all_required_protocols_are_offered() -> None:
    assert set(PROTOCOLS) == REQUIRED


def test_exports_are_complete() -> None:
    for name in quantum.__all__:
        assert hasattr(quantum, name), name


@pytest.mark.parametrize("protocol", sorted(REQUIRED))
def test_per_pulse_agrees_with_the_curve(protocol: str) -> None:
    link = LinkSpec(length_km=40.0)
    curve = secret_key_rate_curve(protocol, link, np.array([10.0, 40.0, 90.0]))
    assert curve.shape == (3,)
    assert secret_key_rate_per_pulse(protocol, link) == pytest.approx(curve[1], rel=1e-12)


def test_bits_per_second_is_per_pulse_times_repetition_rate() -> None:
    link = LinkSpec(length_km=30.0, repetition_rate_hz=2.5e9)
    per_pulse = secret_key_rate_per_pulse("bb84-decoy", link)
    assert quantum.secret_key_rate_bps("bb84-decoy", link) == per_pulse * 2.5e9


def test_curve_ignores_length_and_uses_the_given_distances() -> None:
    d = np.array([25.0])
    a = secret_key_rate_curve("bb84-decoy", LinkSpec(length_km=0.0), d)
    b = secret_key_rate_curve("bb84-decoy", LinkSpec(length_km=300.0), d)
    assert a[0] == b[0] > 0.0


def test_zero_when_no_key() -> None:
    assert secret_key_rate_per_pulse("bb84-decoy", LinkSpec(length_km=500.0)) == 0.0


def test_optimising_never_lowers_the_rate() -> None:
    d = np.arange(0.0, 200.0, 10.0)
    link = preset_link("lim2014")
    for protocol in PROTOCOLS:
        fixed = secret_key_rate_curve(protocol, link, d)
        best = secret_key_rate_curve(protocol, link, d, optimise=True)
        # A grid may miss the link's own value by a hair; allow 1 %.
        assert np.all(best >= 0.99 * fixed), protocol


def test_unknown_protocol_and_negative_distance_raise_parameter_error() -> None:
    with pytest.raises(ParameterError, match="protocol"):
        secret_key_rate_per_pulse("bb85", LinkSpec())
    with pytest.raises(ParameterError, match="distance_km"):
        secret_key_rate_curve("bb84-decoy", LinkSpec(), [-1.0])


def test_link_rejects_bad_new_fields() -> None:
    with pytest.raises(ParameterError, match="sending_probability"):
        LinkSpec(sending_probability=1.5)
    with pytest.raises(ParameterError, match="homodyne_efficiency"):
        replace(LinkSpec(), homodyne_efficiency=-0.1)


def test_presets_build_valid_links() -> None:
    for name in PRESETS:
        link = preset_link(name)
        assert secret_key_rate_per_pulse("bb84-decoy", replace(link, length_km=20.0)) > 0.0
    with pytest.raises(ParameterError, match="preset"):
        preset_link("nope")


def test_long_curves_are_evaluated_in_chunks_without_seams() -> None:
    d = np.linspace(0.0, 300.0, 5000)  # more than two chunks
    whole = secret_key_rate_curve("twin-field", LinkSpec(), d, optimise=True)
    picks = np.array([0, 2047, 2048, 4095, 4096, 4999])
    alone = secret_key_rate_curve("twin-field", LinkSpec(), d[picks], optimise=True)
    assert whole.shape == (5000,)
    assert np.array_equal(whole[picks], alone)
