"""The simulator: key accounting against closed forms, reroutes, failures, the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from qkdnet.scenario import load_scenario, scenario_from_dict
from qkdnet.simulation import demand_rate, simulate, write_report
from qkdnet.simulation.engine import schedule_failures

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def chain(rate_bps: float, demand: float, *, hours: float = 1.0, paths: int = 1,
          extra: dict | None = None) -> dict:
    """A - B - C (and A - D - C when paths > 1), one application A -> C, deterministic."""
    nodes = [{"id": n} for n in "ABCD"]
    links = [
        {"id": "AB", "a": "A", "b": "B", "length_km": 10, "key_rate_bps": rate_bps},
        {"id": "BC", "a": "B", "b": "C", "length_km": 10, "key_rate_bps": rate_bps},
        {"id": "AD", "a": "A", "b": "D", "length_km": 30, "key_rate_bps": rate_bps},
        {"id": "DC", "a": "D", "b": "C", "length_km": 30, "key_rate_bps": rate_bps},
    ]
    data = {
        "name": "chain", "duration_s": hours * 3600, "nodes": nodes, "links": links,
        "saes": [{"id": "sa", "node": "A"}, {"id": "sc", "node": "C"}],
        "applications": [{
            "id": "app", "master": "sa", "slave": "sc", "key_size_bits": 256, "paths": paths,
            "demand": {"kind": "constant", "rate_keys_per_s": demand, "poisson": False},
        }],
    }
    data.update(extra or {})
    return data


MAC = 48  # link-key bytes per relay message per hop (qkdnet.keys.MAC_KEY_BYTES)


def test_supply_exceeds_demand_closed_form() -> None:
    # 1024 b/s = 128 B/s per link; 2 keys/s of 32 B in one supply call: 2*32 + 48 = 112 B/s
    # spent on each hop of A-B-C, all served; the idle A-D-C pools only fill.
    result = simulate(scenario_from_dict(chain(1024.0, 2.0)))
    totals = result.totals()["app"]
    assert totals == {"requested": 7200, "served": 7200, "refused_no_key": 0,
                      "refused_no_route": 0}
    pools = dict(zip(result.link_ids, result.pool_bits[-1], strict=True))
    assert pools["AB"] == pools["BC"] == (128 - (2 * 32 + MAC)) * 3600 * 8
    assert pools["AD"] == pools["DC"] == 128 * 3600 * 8


def reference_single_path(rate_bytes_per_s: int, keys_per_s: int, steps: int) -> int:
    """An independent, literal loop: each second the hops gain key, then the application
    asks for its keys in one call and gets the most that fit (keys*32 + 48 bytes)."""
    pool, served = 0, 0
    for _ in range(steps):
        pool += rate_bytes_per_s
        got = keys_per_s
        while got > 0 and got * 32 + MAC > pool:
            got -= 1
        if got:
            pool -= got * 32 + MAC
        served += got
    return served


def test_demand_exceeds_supply_serves_what_fits() -> None:
    # 512 b/s = 64 B/s per hop, 5 keys/s asked: far more than fits.
    result = simulate(scenario_from_dict(chain(512.0, 5.0)))
    totals = result.totals()["app"]
    expected = reference_single_path(64, 5, 3600)
    assert totals["served"] == expected
    assert totals["refused_no_key"] == 5 * 3600 - expected
    # Nothing is lost: what was spent is what the two calls per served batch cost.
    assert 0 < expected < 64 * 3600 // 32


def test_two_disjoint_paths_spend_key_on_both() -> None:
    result = simulate(scenario_from_dict(chain(1024.0, 1.0, paths=2)))
    assert result.totals()["app"]["served"] == 3600
    pools = dict(zip(result.link_ids, result.pool_bits[-1], strict=True))
    assert all(pools[k] == (128 - (32 + MAC)) * 3600 * 8 for k in ("AB", "BC", "AD", "DC"))
    assert result.paths["app"][0][1] == [["A", "B", "C"], ["A", "D", "C"]]


def test_link_failure_reroutes_and_node_failure_refuses_with_no_path() -> None:
    failures = {"failures": [
        {"element": "BC", "kind": "link", "at_s": 600, "repair_after_s": 600},
        {"element": "A", "kind": "node", "at_s": 2400, "repair_after_s": 300},
    ]}
    result = simulate(scenario_from_dict(chain(1024.0, 2.0, extra=failures)))
    reroutes = result.reroutes()
    assert [e.time_s for e in reroutes] == [600.0, 1200.0, 2400.0, 2700.0]
    assert "A-B-C -> A-D-C" in reroutes[0].message
    assert "node A is down" in reroutes[2].message
    totals = result.totals()["app"]
    # 300 s without any path at 2 keys/s; nothing else refused.
    assert totals["refused_no_route"] == 600 and totals["refused_no_key"] == 0
    assert result.paths["app"][1] == (600.0, [["A", "D", "C"]])


def test_random_failures_match_mtbf_mttr() -> None:
    # Fraction of time down of an alternating renewal process: MTTR / (MTBF + MTTR).
    s = scenario_from_dict(chain(1024.0, 1.0, extra={"failures": [
        {"element": "*", "kind": "link", "mtbf_s": 3600, "mttr_s": 1200}]}))
    rng = np.random.default_rng(5)
    horizon = 1000 * 3600.0
    events = schedule_failures(s, horizon, 1.0, rng)
    down = 0.0
    for link in ("AB", "BC", "AD", "DC"):
        times = sorted((e.step, e.action) for e in events if e.element == link)
        start = None
        for step, action in times:
            if action == "link_down":
                start = step
            elif start is not None:
                down += step - start
                start = None
        if start is not None:
            down += horizon - start
    fraction = down / (4 * horizon)
    # ~4000 cycles: the standard error of the fraction is about 0.005.
    assert fraction == pytest.approx(1200 / 4800, abs=0.02)


def test_diurnal_demand_peaks_at_peak_hour() -> None:
    from qkdnet.scenario import DemandProfile

    p = DemandProfile(kind="diurnal", rate_keys_per_s=10, amplitude=0.5, peak_hour=14)
    r = demand_rate(p, np.array([14 * 3600.0, 2 * 3600.0]))
    assert r == pytest.approx([10.0, 5.0])


def test_tokyo_demo_shows_reroutes_and_writes_report(tmp_path: Path) -> None:
    scenario = load_scenario(SCENARIOS / "tokyo-qkd-network.yaml")
    result = simulate(scenario, duration_s=12 * 3600)
    bank = [e for e in result.reroutes() if e.element == "bank-link"]
    assert bank and "Otemachi-Hongo -> Otemachi-Hakusan-Hongo" in bank[0].message
    assert bank[0].time_s == 6 * 3600
    assert result.totals()["bank-link"]["refused_no_route"] == 0
    report = write_report(result, tmp_path)
    text = report.read_text(encoding="utf-8")
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 4
    assert "http://" not in text and "https://" not in text  # self-contained
    assert "Otemachi-Hakusan-Hongo" in text
    series = json.loads((tmp_path / "series.json").read_text())
    served = sum(series["applications"]["bank-link"]["served"])
    assert served == result.totals()["bank-link"]["served"]
    for name in ("pools.csv", "applications.csv", "events.csv", "paths.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_pipeline_mode_measures_a_finite_key_rate_below_the_asymptotic_one() -> None:
    from qkdnet.quantum import secret_key_rate_per_pulse
    from qkdnet.simulation.rates import link_rate_and_qber

    s = scenario_from_dict({
        "name": "p", "nodes": [{"id": "A"}, {"id": "B"}],
        "links": [{"id": "AB", "a": "A", "b": "B", "length_km": 10, "mode": "pipeline",
                   "pipeline_pulses": 200_000_000}],
    })
    link = s.links[0]
    rate, qber = link_rate_and_qber(link, np.random.default_rng(4))
    asymptotic = secret_key_rate_per_pulse("bb84-decoy", link.to_link_spec()) * 1e9
    # Finite key (Lim et al. 2014) on 2e8 pulses: positive, and below the asymptotic bound.
    assert 0 < rate < asymptotic
    # The QBER measured on the test bits is near the 0.5 % misalignment of the link.
    assert 0.003 < qber < 0.008


def test_vectorised_link_rates_match_one_by_one() -> None:
    from qkdnet.simulation.rates import link_rate_and_qber, link_rates

    s = load_scenario(SCENARIOS / "japan-backbone.yaml")
    rates, qbers = link_rates(s.links)
    for i in (0, 7, 40, len(s.links) - 1):
        assert (rates[i], qbers[i]) == pytest.approx(link_rate_and_qber(s.links[i]))


def test_admitted_reservation_is_served_before_best_effort() -> None:
    # Two applications share A-B-C, 1024 b/s = 128 B/s per hop, each asking 1 key/s
    # (1 key = 32 + 48 B): only one fits each second. The reserved one (tenant, 256 b/s =
    # its 1 key/s) is served in full, the best-effort one (even at priority 9) gets the
    # 48 B/s left over. tests/test_simulation_reservations.py has the exact rules.
    data = chain(1024.0, 1.0, extra={
        "tenants": [{"id": "bank", "reservations": [{"a": "A", "b": "C", "rate_bps": 256}]}],
    })
    data["links"] = data["links"][:2]
    data["saes"].append({"id": "sa2", "node": "A"})
    data["saes"].append({"id": "sc2", "node": "C"})
    best_effort = dict(data["applications"][0], id="best", master="sa2", slave="sc2",
                       priority=9)
    data["applications"] = [dict(data["applications"][0], tenant="bank"), best_effort]
    result = simulate(scenario_from_dict(data))
    totals = result.totals()
    assert totals["app"]["served"] == 3600
    assert 3600 * 48 // 80 - 10 <= totals["best"]["served"] <= 3600 * 48 // 80
