"""The controller: rerouting on failures and QBER alarms, tenants, alarms, ETSI 015 view."""

from __future__ import annotations

import numpy as np
import pytest

from qkdnet.control import AlarmKind, Controller, RoutePolicy
from qkdnet.errors import RoutingError


def ring() -> Controller:
    """A square A-B-C-D-A; the short way from A to C is via B."""
    c = Controller(qber_threshold=0.11, pool_low_fraction=0.1)
    for n in "ABCD":
        c.add_node(n)
    c.add_link("AB", "A", "B", length_km=10, key_rate_bps=1000, pool_capacity_bits=1000)
    c.add_link("BC", "B", "C", length_km=10, key_rate_bps=1000, pool_capacity_bits=1000)
    c.add_link("CD", "C", "D", length_km=15, key_rate_bps=500, pool_capacity_bits=1000)
    c.add_link("DA", "D", "A", length_km=15, key_rate_bps=500, pool_capacity_bits=1000)
    return c


def test_link_failure_reroutes_at_once_and_repair_restores() -> None:
    c = ring()
    route = c.open_route("r", "A", "C")
    assert route.paths == [["A", "B", "C"]]
    changes = c.set_link_up("BC", False, time_s=5.0)
    assert [ch.new_paths for ch in changes] == [(("A", "D", "C"),)]
    assert route.paths == [["A", "D", "C"]] and changes[0].time_s == 5.0
    assert (AlarmKind.LINK_DOWN, "BC") in c.active_alarms()
    # The second way dies too: the route fails, with the reason, and a route-lost alarm.
    c.set_link_up("CD", False, time_s=6.0)
    assert route.paths == [] and route.failure is not None
    assert "over links in service" in route.failure
    assert (AlarmKind.ROUTE_LOST, "r") in c.active_alarms()
    c.set_link_up("CD", True, time_s=7.0)
    assert route.paths == [["A", "D", "C"]]
    c.set_link_up("BC", True, time_s=8.0)
    assert route.paths == [["A", "B", "C"]]
    assert c.active_alarms() == []


def test_parallel_link_keeps_route() -> None:
    c = ring()
    c.add_link("BC2", "B", "C", length_km=10, key_rate_bps=1000)
    route = c.open_route("r", "A", "C")
    assert c.set_link_up("BC", False) == []
    assert route.paths == [["A", "B", "C"]]
    assert c.km.edges["B", "C"]["rate_bps"] == 1000


def test_qber_alarm_takes_link_out() -> None:
    c = ring()
    route = c.open_route("r", "A", "C")
    c.report_qber("AB", 0.05)
    assert route.paths == [["A", "B", "C"]]
    changes = c.report_qber("AB", 0.14, time_s=3.0)
    assert changes and route.paths == [["A", "D", "C"]]
    assert "QBER alarm on AB" in changes[0].reason
    assert (AlarmKind.QBER_HIGH, "AB") in c.active_alarms()
    c.report_qber("AB", 0.03, time_s=4.0)
    assert route.paths == [["A", "B", "C"]]


def test_node_failure_reroutes() -> None:
    c = ring()
    route = c.open_route("r", "A", "C")
    c.set_node_up("B", False, time_s=1.0)
    assert route.paths == [["A", "D", "C"]]


def test_tenant_admission_control() -> None:
    c = ring()
    c.add_tenant("bank")
    first = c.reserve("bank", "A", "C", 800)
    assert first.path == ["A", "B", "C"]
    # 200 b/s left on A-B-C and 500 on A-D-C: 400 goes the long way, 600 is refused.
    second = c.reserve("bank", "A", "C", 400)
    assert second.path == ["A", "D", "C"]
    with pytest.raises(RoutingError, match="refused"):
        c.reserve("bank", "A", "C", 600)
    # A cut on B-C: the first reservation cannot be re-admitted (100 b/s left on A-D-C).
    c.set_link_up("BC", False, time_s=2.0)
    assert not first.met and second.met
    assert (AlarmKind.RESERVATION_UNMET, "bank:A-C") in c.active_alarms()
    c.set_link_up("BC", True, time_s=3.0)
    assert first.met


def test_tenant_allowed_nodes_constrain_routes() -> None:
    c = ring()
    c.add_tenant("gov", allowed_nodes={"D"})
    route = c.open_route("g", "A", "C", tenant="gov")
    assert route.paths == [["A", "D", "C"]]


def test_pool_low_alarms_raise_and_clear() -> None:
    c = ring()
    raised = c.set_pool_levels(np.array([50.0, 500, 500, 500]), time_s=1.0)
    assert [(a.kind, a.element, a.active) for a in raised] == [(AlarmKind.POOL_LOW, "AB", True)]
    cleared = c.set_pool_levels(np.array([500.0, 500, 500, 500]), time_s=2.0)
    assert [a.active for a in cleared] == [False]
    assert c.km.edges["A", "B"]["pool_bits"] == 500.0


def test_widest_follows_pool_levels() -> None:
    c = ring()
    pol = RoutePolicy(metric="widest", horizon_s=0.0)
    c.set_pool_levels(np.array([100.0, 100, 900, 900]))
    assert c.paths("A", "C", pol) == [["A", "D", "C"]]
    c.set_pool_levels(np.array([900.0, 900, 100, 100]))
    assert c.paths("A", "C", pol) == [["A", "B", "C"]]


def test_etsi015_view_names() -> None:
    c = ring()
    c.open_route("r", "A", "C")
    view = c.etsi015()
    types = {link["qkdl_id"]: link["qkdl_type"] for link in view["links"]}
    assert types["AB"] == "direct" and types["r/0"] == "virtual"
    assert {n["qkdn_id"] for n in view["nodes"]} == set("ABCD")


def test_reservation_unmet_only_when_requests_were_refused() -> None:
    c = ring()
    c.add_tenant("bank")
    c.reserve("bank", "A", "C", 400)
    c.report_delivery("bank", "A", "C", 100.0, 1.0, refused_keys=0)  # asked for little
    assert c.active_alarms() == []
    c.report_delivery("bank", "A", "C", 100.0, 2.0, refused_keys=5)
    assert (AlarmKind.RESERVATION_UNMET, "bank:A-C") in c.active_alarms()
    c.report_delivery("bank", "A", "C", 500.0, 3.0, refused_keys=0)
    assert c.active_alarms() == []


def test_admission_books_the_link_key_each_hop_spends() -> None:
    # 1000 b/s on A-B-C, 500 on A-D-C. 600 b/s of key that costs 900 b/s of link key per
    # hop (authentication included) takes A-B-C, leaving 100 b/s there; 300 (hop 450)
    # goes A-D-C, leaving 50; 100 (hop 150) then fits nowhere although its rate alone
    # (100 b/s) would fit on A-B-C; 50 with no overhead still fits on A-B-C.
    c = ring()
    c.add_tenant("bank")
    assert c.reserve("bank", "A", "C", 600, hop_rate_bps=900).path == ["A", "B", "C"]
    assert c.residual_rate_bps("A", "B") == pytest.approx(100.0)
    assert c.reserve("bank", "A", "C", 300, hop_rate_bps=450).path == ["A", "D", "C"]
    with pytest.raises(RoutingError, match="refused"):
        c.reserve("bank", "A", "C", 100, hop_rate_bps=150)
    assert c.reserve("bank", "A", "C", 50, hop_rate_bps=50).path == ["A", "B", "C"]
    with pytest.raises(Exception, match="hop_rate_bps"):
        c.reserve("bank", "A", "C", 10, hop_rate_bps=5)


def test_reservation_alarm_follows_the_reserved_keys_exactly() -> None:
    c = ring()
    c.add_tenant("bank")
    c.reserve("bank", "A", "C", 400)
    c.report_reservation("bank", "A", "C", 10, 10, 1.0)  # all reserved keys served
    assert c.active_alarms() == []
    c.report_reservation("bank", "C", "A", 10, 9, 2.0)  # one refused: unmet
    assert c.active_alarms() == [(AlarmKind.RESERVATION_UNMET, "bank:A-C")]
    c.report_reservation("bank", "A", "C", 0, 0, 3.0)  # nothing asked: met
    assert c.active_alarms() == []
    with pytest.raises(Exception, match="served_keys"):
        c.report_reservation("bank", "A", "C", 1, 2, 4.0)


def test_tenant_route_follows_its_reservation() -> None:
    # Another tenant holds 800 of A-B-C's 1000 b/s, so the bank's 400 is admitted on
    # A-D-C: the bank's route A -> C must relay there, not on the shorter A-B-C.
    c = ring()
    c.add_tenant("other")
    c.add_tenant("bank")
    c.reserve("other", "A", "C", 800)
    res = c.reserve("bank", "A", "C", 400)
    assert res.path == ["A", "D", "C"]
    route = c.open_route("r", "C", "A", tenant="bank")
    assert route.paths == [["C", "D", "A"]]
    assert c.open_route("plain", "A", "C").paths == [["A", "B", "C"]]
    # A cut on C-D: no path with 400 b/s unreserved is left, the reservation is unmet and
    # the route falls back to the router's path; the repair re-admits and moves it back.
    c.set_link_up("CD", False, time_s=1.0)
    assert not res.met and route.paths == [["C", "B", "A"]]
    c.set_link_up("CD", True, time_s=2.0)
    assert res.met and route.paths == [["C", "D", "A"]]
    assert c.reservation_for(route) is res


def test_admission_sees_every_change_between_reservations() -> None:
    # Admission keeps its residual graph between reservations: it must follow bookings,
    # rate telemetry, cuts and node outages exactly as a fresh computation would.
    c = ring()
    c.add_tenant("bank")
    c.reserve("bank", "A", "C", 900)  # A-B-C, 100 left
    c.set_link_metrics("AB", key_rate_bps=2000)  # A-B: 1100 left, B-C still 100
    assert c.reserve("bank", "A", "C", 300).path == ["A", "D", "C"]  # 200 left there
    c.set_link_metrics("BC", key_rate_bps=1500)  # B-C: 600 left
    assert c.reserve("bank", "A", "B", 1000).path == ["A", "B"]  # A-B: 100 left
    assert c.reserve("bank", "B", "C", 550).path == ["B", "C"]  # B-C: 50 left
    c.set_node_up("D", False, time_s=1.0)
    with pytest.raises(RoutingError, match="refused"):
        c.reserve("bank", "A", "C", 150)  # A-D-C gone, A-B-C has 50
    c.set_node_up("D", True, time_s=2.0)
    assert c.reserve("bank", "A", "C", 150).path == ["A", "D", "C"]
