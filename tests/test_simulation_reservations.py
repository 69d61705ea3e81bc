"""Tenants' reservations in the simulator, against a literal reference loop.

The network is A - B - C (two identical hops) with a tenant's application A -> C and a
best-effort application on the same pair. ``reference`` re-does, step by step and with
plain integers, the rules docs/simulation.md states for reservations:

- a token bucket per reservation (bits): ``rate_bps * dt`` a step, capped at
  ``ceil(rate_bps * dt) + key_bits - 1``, starting full; the keys it pays for are the
  reserved part of the request, the rest is best effort;
- the reserved part is served first; best effort goes by priority and may not draw a hop
  below what the reservation can draw until the hop's next block of key arrives;
- a supply call costs 32 B per 256-bit key plus 48 B of authentication key per hop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qkdnet.control import AlarmKind
from qkdnet.scenario import scenario_from_dict
from qkdnet.simulation import simulate
from qkdnet.simulation.results import SimulationResult

KEY = 32  # bytes per 256-bit key
MAC = 48  # link-key bytes per relay message per hop (qkdnet.keys.MAC_KEY_BYTES)


def cost(k: int) -> int:
    """Link-key bytes per hop of one supply call of k keys (up to 128 per call)."""
    return k * KEY + -(-k // 128) * MAC if k else 0


def most(want: int, room: int) -> int:
    """Most keys (<= want) whose cost fits in ``room`` bytes, by counting down."""
    k = want
    while k > 0 and cost(k) > room:
        k -= 1
    return k


def reference(*, rate_bps: int, block_bits: int, pool0: int, steps: int, res_bps: int | None,
              app: int, best: int, app_first: bool, protect: bool = True
              ) -> dict[str, list[int]]:
    """Per step: keys served to the tenant's application ('app', reserved part in 'res'
    and requested reserved part in 'res_req') and to the best-effort one ('best')."""
    pool, carry = pool0, 0
    out: dict[str, list[int]] = {"app": [], "res": [], "res_req": [], "best": []}
    tokens = cap = 0
    hold = 0
    if res_bps is not None:
        cap = res_bps + 256 - 1  # ceil(rate * dt) + key_bits - 1, dt = 1 s
        tokens = cap
        h = math.ceil(block_bits / rate_bps)  # steps between deposits at most
        keys_h = (cap + (h - 1) * res_bps) // 256
        calls_h = min(keys_h, h * -(-(cap // 256) // 128))
        hold = keys_h * KEY + calls_h * MAC if protect else 0
    for _ in range(steps):
        carry += rate_bps  # bits produced, deposited in whole blocks
        pool += (carry // block_bits) * block_bits // 8
        carry %= block_bits
        reserved = 0
        if res_bps is not None:
            tokens = min(cap, tokens + res_bps)
            reserved = min(app, tokens // 256)
            tokens -= reserved * 256
        got_res = most(reserved, pool)
        pool -= cost(got_res)
        excess = app - reserved
        if app_first:
            got_excess = most(excess, pool - hold)
            pool -= cost(got_excess)
            got_best = most(best, pool - hold)
            pool -= cost(got_best)
        else:
            got_best = most(best, pool - hold)
            pool -= cost(got_best)
            got_excess = most(excess, pool - hold)
            pool -= cost(got_excess)
        out["app"].append(got_res + got_excess)
        out["res"].append(got_res)
        out["res_req"].append(reserved)
        out["best"].append(got_best)
    return out


def scenario(*, rate_bps: int, block_bits: int, pool0: int, steps: int,
             reservations: list[dict], app: int, best: int, app_first: bool,
             engine: str = "vector", telemetry_s: int = 300) -> dict:
    links = [{"id": "AB", "a": "A", "b": "B", "length_km": 10, "key_rate_bps": rate_bps,
              "initial_pool_bits": pool0 * 8},
             {"id": "BC", "a": "B", "b": "C", "length_km": 10, "key_rate_bps": rate_bps,
              "initial_pool_bits": pool0 * 8}]

    def application(name: str, master: str, slave: str, rate: int, prio: int,
                    tenant: str | None) -> dict:
        return {"id": name, "master": master, "slave": slave, "key_size_bits": 256,
                "priority": prio, "tenant": tenant,
                "demand": {"kind": "constant", "rate_keys_per_s": rate, "poisson": False}}

    return {
        "name": "reservations", "duration_s": steps, "seed": 1,
        "nodes": [{"id": n} for n in "ABC"], "links": links,
        "saes": [{"id": s, "node": s[1].upper()} for s in ("sa", "sc", "xa", "xc")],
        "applications": [application("app", "sa", "sc", app, 9 if app_first else 0, "bank"),
                         application("best", "xa", "xc", best, 5, None)],
        "tenants": [{"id": "bank", "reservations": reservations}],
        "simulation": {"engine": engine, "block_bits": block_bits, "record_every_s": 1,
                       "reroute_every_s": telemetry_s},
    }


def run(**kw: object) -> tuple[dict[str, np.ndarray], SimulationResult]:
    result = simulate(scenario_from_dict(scenario(**kw)))  # type: ignore[arg-type]
    return {"app": result.served[:, 0], "best": result.served[:, 1]}, result


@pytest.mark.parametrize("app_first", [False, True])
def test_reserved_share_served_in_full_and_excess_is_best_effort(app_first: bool) -> None:
    # 1024 b/s = 128 B/s per hop. Reservation 512 b/s = 2 keys/s (2*32 + 48 = 112 B/s).
    # The tenant asks 4 keys/s: 2 reserved, 2 best effort; another application asks 4.
    kw = {"rate_bps": 1024, "block_bits": 256, "pool0": 0, "steps": 600, "app": 4, "best": 4,
          "app_first": app_first}
    ref = reference(res_bps=512, **kw)  # type: ignore[arg-type]
    got, result = run(reservations=[{"a": "A", "b": "C", "rate_bps": 512}], **kw)
    np.testing.assert_array_equal(got["app"], ref["app"])
    np.testing.assert_array_equal(got["best"], ref["best"])
    # Closed form: the reserved 2 keys/s are served every second under contention ...
    assert ref["res"] == [2] * 600 == ref["res_req"]
    # ... and only 16 B/s is left over for best effort (one 80-B call per 5 s), going to
    # the higher priority: the tenant's excess (priority 9) or the other (priority 5).
    first, second = ("app", "best") if app_first else ("best", "app")
    extra = int(got[first].sum()) - (1200 if first == "app" else 0)
    assert 600 * 16 // 80 - 3 <= extra <= 600 * 16 // 80
    assert int(got[second].sum()) == (1200 if second == "app" else 0)
    assert not [a for a in result.alarms if a.kind is AlarmKind.RESERVATION_UNMET]


def test_best_effort_flood_cannot_starve_a_reservation() -> None:
    # Key arrives in 512-B blocks every 4 s. The tenant's 1 key/s is reserved (256 b/s);
    # a best-effort flood of 50 keys/s at a higher priority would empty each block at once.
    kw = {"rate_bps": 1024, "block_bits": 4096, "pool0": 512, "steps": 400, "app": 1,
          "best": 50, "app_first": False}
    ref = reference(res_bps=256, **kw)  # type: ignore[arg-type]
    got, result = run(reservations=[{"a": "A", "b": "C", "rate_bps": 256}], **kw)
    np.testing.assert_array_equal(got["app"], ref["app"])
    np.testing.assert_array_equal(got["best"], ref["best"])
    assert int(got["app"].sum()) == 400  # every reserved key, every second
    assert result.reserved_served is not None and result.reserved_requested is not None
    np.testing.assert_array_equal(result.reserved_served[:, 0], ref["res"])
    np.testing.assert_array_equal(result.reserved_requested[:, 0], ref["res_req"])
    assert result.to_json()["applications"]["app"]["reserved_served"] == ref["res"]
    assert "reserved_served" not in result.to_json()["applications"]["best"]
    # Best effort takes everything else: 128 B/s less 80 B/s, in whole 50-key calls or
    # fewer; within one block of the closed form.
    assert abs(int(got["best"].sum()) * KEY + MAC * np.count_nonzero(got["best"])
               - (400 * 128 + 512 - 400 * 80)) <= 512
    assert not [a for a in result.alarms if a.kind is AlarmKind.RESERVATION_UNMET]
    # The protection is what saves it: without it the same loop starves the tenant.
    unprotected = reference(res_bps=256, protect=False, **kw)  # type: ignore[arg-type]
    assert sum(unprotected["app"]) < 400 * 0.5


def test_engines_agree_with_reservations() -> None:
    kw = {"rate_bps": 1024, "block_bits": 4096, "pool0": 0, "steps": 120, "app": 3,
          "best": 6, "app_first": False, "telemetry_s": 20,
          "reservations": [{"a": "A", "b": "C", "rate_bps": 256}]}
    fast = simulate(scenario_from_dict(scenario(engine="vector", **kw)))  # type: ignore[arg-type]
    exact = simulate(scenario_from_dict(scenario(engine="keymanager", **kw)))  # type: ignore[arg-type]
    for name in ("requested", "served", "refused_no_key", "refused_no_route", "pool_bits"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name))
    assert [(a.time_s, a.active) for a in fast.alarms] == [
        (a.time_s, a.active) for a in exact.alarms]
    assert exact.served.sum() > 0


def test_admission_refuses_what_the_path_cannot_carry() -> None:
    # 1024 b/s per hop. 1000 b/s of 256-bit keys needs 3.9 keys/s plus a 48-B MAC a
    # second on each hop: 1000 + 384 > 1024 b/s, refused (the rate alone would fit).
    # Then 512 b/s (512 + 384 = 896 b/s) fits, and a second tenant's 256 b/s
    # (256 + 384 = 640 b/s) no longer does on the 128 b/s left.
    kw = {"rate_bps": 1024, "block_bits": 256, "pool0": 0, "steps": 60, "app": 4, "best": 4,
          "app_first": False}
    data = scenario(reservations=[{"a": "A", "b": "C", "rate_bps": 1000}], **kw)  # type: ignore[arg-type]
    result = simulate(scenario_from_dict(data))
    assert [e.kind for e in result.events if e.kind.startswith("reservation")] == [
        "reservation_refused"]
    # Refused: no priority at all, the tenant's demand is best effort (priority 0 here).
    ref = reference(res_bps=None, **kw)  # type: ignore[arg-type]
    np.testing.assert_array_equal(result.served[:, 0], ref["app"])
    np.testing.assert_array_equal(result.served[:, 1], ref["best"])

    data = scenario(reservations=[{"a": "A", "b": "C", "rate_bps": 512}], **kw)  # type: ignore[arg-type]
    data["tenants"].append({"id": "gov", "reservations": [
        {"a": "A", "b": "C", "rate_bps": 256}]})
    data["applications"][1]["tenant"] = "gov"
    result = simulate(scenario_from_dict(data))
    kinds = {e.element: e.kind for e in result.events if e.kind.startswith("reservation")}
    assert kinds == {"bank:A-C": "reservation", "gov:A-C": "reservation_refused"}


def test_unmet_alarm_fires_exactly_when_reserved_keys_are_refused() -> None:
    # The pools start empty and the first 512-B block comes at 4 s: the reserved key of
    # seconds 0-2 is refused, then the reservation is met. With telemetry every 20 s the
    # alarm is raised at 20 s (interval 0-20 s) and cleared at 40 s, and nothing else.
    kw = {"rate_bps": 1024, "block_bits": 4096, "pool0": 0, "steps": 200, "app": 2,
          "best": 50, "app_first": False}
    ref = reference(res_bps=256, **kw)  # type: ignore[arg-type]
    got, result = run(reservations=[{"a": "A", "b": "C", "rate_bps": 256}], telemetry_s=20,
                      **kw)
    np.testing.assert_array_equal(got["app"], ref["app"])
    expected, active = [], False
    for t in range(20, 201, 20):  # ticks, and the end of the run
        unmet = sum(ref["res_req"][t - 20:t]) > sum(ref["res"][t - 20:t])
        if unmet != active:
            expected.append((float(t), unmet))
            active = unmet
    alarms = [(a.time_s, a.active) for a in result.alarms
              if a.kind is AlarmKind.RESERVATION_UNMET]
    assert alarms == expected == [(20.0, True), (40.0, False)]
    # Demand above the reservation (2 keys/s against 1 reserved) was refused in plenty
    # of intervals without raising it: only the reserved part counts.
    assert sum(ref["app"]) < 2 * 200


def test_reserved_application_relays_along_its_admitted_path() -> None:
    # A-B-C carries 512 b/s, the longer A-D-C 2048 b/s. 512 b/s of reservation (2 keys/s)
    # needs 896 b/s per hop with authentication: admitted on A-D-C only, and the tenant's
    # application relays there (the best-effort one keeps the shortest path A-B-C).
    data = scenario(rate_bps=512, block_bits=256, pool0=0, steps=120, app=2, best=1,
                    app_first=False, reservations=[{"a": "A", "b": "C", "rate_bps": 512}])
    data["nodes"].append({"id": "D"})
    data["links"] += [
        {"id": "AD", "a": "A", "b": "D", "length_km": 30, "key_rate_bps": 2048},
        {"id": "DC", "a": "D", "b": "C", "length_km": 30, "key_rate_bps": 2048}]
    runs = {}
    for engine in ("vector", "keymanager"):
        data["simulation"]["engine"] = engine
        runs[engine] = simulate(scenario_from_dict(data))
    fast, exact = runs["vector"], runs["keymanager"]
    assert fast.paths["app"][0][1] == [["A", "D", "C"]]
    assert fast.paths["best"][0][1] == [["A", "B", "C"]]
    assert int(fast.served[:, 0].sum()) == 240  # 2 keys/s reserved, all served
    for name in ("served", "refused_no_key", "pool_bits"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name))


@settings(max_examples=12, deadline=None)
@given(rate64=st.integers(8, 40), block_bits=st.sampled_from([256, 1024, 4096]),
       res_bps=st.integers(1, 1000), app=st.integers(0, 6), best=st.integers(0, 30),
       pool0=st.integers(0, 600), app_first=st.booleans())
def test_any_admitted_reservation_matches_the_reference(
        rate64: int, block_bits: int, res_bps: int, app: int, best: int, pool0: int,
        app_first: bool) -> None:
    rate_bps = 64 * rate64  # whole 1/64 blocks per step: the engine's float carry is exact
    keys = res_bps / 256
    hop = res_bps + 384 * min(keys, keys / 128 + 1)
    assume(hop <= rate_bps)  # admitted (admission itself is tested above)
    kw = {"rate_bps": rate_bps, "block_bits": block_bits, "pool0": pool0, "steps": 150,
          "app": app, "best": best, "app_first": app_first}
    ref = reference(res_bps=res_bps, **kw)  # type: ignore[arg-type]
    got, result = run(reservations=[{"a": "A", "b": "C", "rate_bps": res_bps}],
                      telemetry_s=30, **kw)
    np.testing.assert_array_equal(got["app"], ref["app"])
    np.testing.assert_array_equal(got["best"], ref["best"])
    expected, active = [], False
    for t in range(30, 151, 30):  # ticks, and the end of the run
        unmet = sum(ref["res_req"][t - 30:t]) > sum(ref["res"][t - 30:t])
        if unmet != active:
            expected.append((float(t), unmet))
            active = unmet
    assert [(a.time_s, a.active) for a in result.alarms
            if a.kind is AlarmKind.RESERVATION_UNMET] == expected


@settings(max_examples=6, deadline=None)
@given(rate64=st.integers(8, 40), block_bits=st.sampled_from([256, 1024, 4096]),
       res_bps=st.integers(1, 1000), app=st.integers(0, 6), best=st.integers(0, 30),
       pool0=st.integers(0, 600), app_first=st.booleans())
def test_engines_agree_on_any_admitted_reservation(
        rate64: int, block_bits: int, res_bps: int, app: int, best: int, pool0: int,
        app_first: bool) -> None:
    rate_bps = 64 * rate64
    keys = res_bps / 256
    assume(res_bps + 384 * min(keys, keys / 128 + 1) <= rate_bps)
    kw = {"rate_bps": rate_bps, "block_bits": block_bits, "pool0": pool0, "steps": 60,
          "app": app, "best": best, "app_first": app_first, "telemetry_s": 20,
          "reservations": [{"a": "A", "b": "C", "rate_bps": res_bps}]}
    fast = simulate(scenario_from_dict(scenario(engine="vector", **kw)))  # type: ignore[arg-type]
    exact = simulate(scenario_from_dict(scenario(engine="keymanager", **kw)))  # type: ignore[arg-type]
    for name in ("served", "refused_no_key", "pool_bits"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(exact, name))
    assert [(a.time_s, a.active) for a in fast.alarms] == [
        (a.time_s, a.active) for a in exact.alarms]
