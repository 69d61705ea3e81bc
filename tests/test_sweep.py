"""Sweeps: variation parsing, grids, and runs on a real local Dask cluster."""

from __future__ import annotations

import pytest

from qkdnet.errors import ParameterError
from qkdnet.scenario import scenario_from_dict
from qkdnet.simulation.sweep import (
    grid_points,
    parse_variation,
    run_point,
    run_sweep,
    scenario_at,
)


def chain() -> dict:
    return {
        "name": "chain", "duration_s": 600,
        "nodes": [{"id": "A"}, {"id": "B"}, {"id": "C"}],
        "links": [
            {"id": "AB", "a": "A", "b": "B", "length_km": 10, "key_rate_bps": 1024},
            {"id": "BC", "a": "B", "b": "C", "length_km": 10, "key_rate_bps": 1024},
        ],
        "saes": [{"id": "sa", "node": "A"}, {"id": "sc", "node": "C"}],
        "applications": [{"id": "app", "master": "sa", "slave": "sc",
                          "demand": {"rate_keys_per_s": 2, "poisson": False}}],
    }


def reference(rate_bytes_per_s: int, keys_per_s: int, steps: int) -> int:
    """Keys served on a path whose hops gain ``rate_bytes_per_s``, asked ``keys_per_s``
    each second in one call costing keys*32 + 48 bytes per hop (a literal loop)."""
    pool = served = 0
    for _ in range(steps):
        pool += rate_bytes_per_s
        got = keys_per_s
        while got > 0 and got * 32 + 48 > pool:
            got -= 1
        pool -= got * 32 + 48 if got else 0
        served += got
    return served


def test_parse_variation() -> None:
    assert parse_variation("links.*.length_km=20:80:20").values == (20, 40, 60, 80)
    assert parse_variation("x=0.1:0.3:0.1").values == pytest.approx((0.1, 0.2, 0.3))
    assert parse_variation("applications.0.routing=shortest,widest").values == (
        "shortest", "widest")
    for bad in ("nope", "x=", "x=5:1:1", "x=1:2", "x=a:b:c"):
        with pytest.raises(ParameterError):
            parse_variation(bad)


def test_grid_and_paths() -> None:
    v = [parse_variation("links.*.length_km=10,20"), parse_variation("links.AB.key_rate_bps=1,2,3")]
    points = grid_points(v)
    assert len(points) == 6
    s = scenario_at(scenario_from_dict(chain()).model_dump(mode="json"), points[-1])
    assert [ln.length_km for ln in s.links] == [20, 20]
    assert s.links[0].key_rate_bps == 3 and s.links[1].key_rate_bps == 1024
    with pytest.raises(ParameterError, match="nothing matches"):
        scenario_at(chain(), {"links.XY.length_km": 5})


def test_rate_sweep_on_a_local_dask_cluster() -> None:
    distributed = pytest.importorskip("distributed")
    scenario = scenario_from_dict(chain())
    variations = [parse_variation("links.*.key_rate_bps=256,512,1024")]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, processes=True) as cluster:
        rows = run_sweep(scenario, variations, scheduler=cluster.scheduler_address)
    # Each hop makes rate/8 bytes/s; 2 keys/s cost 2*32 + 48 bytes/s per hop.
    assert [r["links.*.key_rate_bps"] for r in rows] == [256, 512, 1024]
    expected = [reference(32, 2, 600), reference(64, 2, 600), 1200]
    assert [r["served"] for r in rows] == expected
    assert expected[0] < expected[1] < 1200
    # The cluster's rows are the ones a plain in-process run gives.
    base = scenario.model_dump(mode="json")
    local = run_point(base, {"links.*.key_rate_bps": 512}, None)
    assert {k: v for k, v in local.items() if k != "wall_s"} == {
        k: v for k, v in rows[1].items() if k != "wall_s"}


def test_local_process_pool() -> None:
    rows = run_sweep(scenario_from_dict(chain()),
                     [parse_variation("links.BC.key_rate_bps=256,1024")], workers=2)
    assert [r["served"] for r in rows] == [reference(32, 2, 600), 1200]
