"""The vector engine against the exact one: real KeyManagers (qkdnet.keys) per node."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.scenario import scenario_from_dict
from qkdnet.simulation import simulate


def scenario(engine: str, rate_bps: float, keys_per_s: float, poisson: bool) -> dict:
    """A - B - C and the longer A - D - C; one application A -> C; a cut on B-C."""
    links = [
        {"id": "AB", "a": "A", "b": "B", "length_km": 10, "key_rate_bps": rate_bps,
         "initial_pool_bits": 4096},
        {"id": "BC", "a": "B", "b": "C", "length_km": 10, "key_rate_bps": rate_bps},
        {"id": "AD", "a": "A", "b": "D", "length_km": 30, "key_rate_bps": rate_bps},
        {"id": "DC", "a": "D", "b": "C", "length_km": 30, "key_rate_bps": rate_bps / 2},
    ]
    return {
        "name": "engines", "duration_s": 240, "seed": 3,
        "nodes": [{"id": n} for n in "ABCD"], "links": links,
        "saes": [{"id": "sa", "node": "A"}, {"id": "sc", "node": "C"}],
        "applications": [{"id": "app", "master": "sa", "slave": "sc", "key_size_bits": 256,
                          "demand": {"rate_keys_per_s": keys_per_s, "poisson": poisson}}],
        "failures": [{"element": "BC", "kind": "link", "at_s": 60, "repair_after_s": 90},
                     {"element": "D", "kind": "node", "at_s": 100, "repair_after_s": 20}],
        "simulation": {"engine": engine, "record_every_s": 10, "block_bits": 512},
    }


@pytest.mark.parametrize(("rate_bps", "keys_per_s", "poisson"),
                         [(2048.0, 3.0, True), (1024.0, 5.0, False)])
def test_vector_engine_matches_real_key_managers(rate_bps: float, keys_per_s: float,
                                                 poisson: bool) -> None:
    fast = simulate(scenario_from_dict(scenario("vector", rate_bps, keys_per_s, poisson)))
    exact = simulate(scenario_from_dict(scenario("keymanager", rate_bps, keys_per_s, poisson)))
    np.testing.assert_array_equal(fast.requested, exact.requested)
    np.testing.assert_array_equal(fast.served, exact.served)
    np.testing.assert_array_equal(fast.refused_no_key, exact.refused_no_key)
    np.testing.assert_array_equal(fast.refused_no_route, exact.refused_no_route)
    np.testing.assert_array_equal(fast.pool_bits, exact.pool_bits)
    assert [e.message for e in fast.reroutes()] == [e.message for e in exact.reroutes()]
    assert exact.served.sum() > 0
    assert fast.refused_no_route.sum() > 0  # the node outage left no path for 20 s
    if keys_per_s * (256 // 8) + 48 > rate_bps / 8:  # demand above supply: refusals
        assert fast.refused_no_key.sum() > 0
