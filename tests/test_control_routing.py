"""Routing for key relay, checked against brute force and Menger's theorem."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.control import Controller, RoutePolicy, find_paths
from qkdnet.errors import RoutingError


def random_controller(seed: int, n: int = 8, p: float = 0.4) -> Controller:
    rng = np.random.default_rng(seed)
    g = nx.gnp_random_graph(n, p, seed=int(rng.integers(1 << 30)))
    c = Controller()
    for v in g.nodes:
        c.add_node(f"n{v}")
    for i, (u, v) in enumerate(g.edges):
        c.add_link(
            f"l{i}", f"n{u}", f"n{v}",
            length_km=float(rng.uniform(5, 80)),
            key_rate_bps=float(rng.uniform(100, 10_000)),
            pool_bits=float(rng.uniform(0, 1e6)),
        )
    return c


def all_simple_paths(c: Controller, s: str, t: str) -> list[list[str]]:
    return [list(p) for p in nx.all_simple_paths(c.km, s, t)]


def length(c: Controller, path: list[str]) -> float:
    return sum(c.km.edges[u, v]["length_km"] for u, v in itertools.pairwise(path))


def width(c: Controller, path: list[str], horizon: float) -> float:
    return min(
        c.km.edges[u, v]["pool_bits"] + c.km.edges[u, v]["rate_bps"] * horizon
        for u, v in itertools.pairwise(path)
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_shortest_and_widest_match_brute_force(seed: int) -> None:
    c = random_controller(seed)
    s, t = "n0", "n1"
    candidates = all_simple_paths(c, s, t)
    if not candidates:
        with pytest.raises(RoutingError, match="no physical path"):
            c.paths(s, t)
        return
    best = min(length(c, p) for p in candidates)
    assert length(c, c.paths(s, t)[0]) == pytest.approx(best, rel=1e-6)
    pol = RoutePolicy(metric="widest", horizon_s=60.0)
    widest = max(width(c, p, 60.0) for p in candidates)
    assert width(c, c.paths(s, t, pol)[0], 60.0) == pytest.approx(widest)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_disjoint_paths_reach_menger_bound(seed: int, k: int) -> None:
    c = random_controller(seed, n=9, p=0.45)
    s, t = "n0", "n1"
    g = c.km.copy()
    direct = g.has_edge(s, t)
    if direct:
        g.remove_edge(s, t)
    connectivity = (nx.node_connectivity(g, s, t) if nx.has_path(g, s, t) else 0) + int(direct)
    if connectivity >= k:
        paths = c.paths(s, t, RoutePolicy(paths=k))
        assert len(paths) == k
        inner = [set(p[1:-1]) for p in paths]
        for a, b in itertools.combinations(inner, 2):
            assert not (a & b)
        assert sum(len(p) == 2 for p in paths) <= 1
    else:
        with pytest.raises(RoutingError):
            c.paths(s, t, RoutePolicy(paths=k))


def line_with_bypass() -> Controller:
    """A - B - C direct, and A - D - E - C as a longer bypass; D has security level 3."""
    c = Controller()
    for n in "ABCDE":
        c.add_node(n, security_level=3 if n == "D" else 1)
    c.add_link("AB", "A", "B", length_km=10, key_rate_bps=1000)
    c.add_link("BC", "B", "C", length_km=10, key_rate_bps=1000)
    c.add_link("AD", "A", "D", length_km=20, key_rate_bps=5000)
    c.add_link("DE", "D", "E", length_km=20, key_rate_bps=5000)
    c.add_link("EC", "E", "C", length_km=20, key_rate_bps=5000)
    return c


def test_policies_and_reasons() -> None:
    c = line_with_bypass()
    assert c.paths("A", "C") == [["A", "B", "C"]]
    assert c.paths("A", "C", RoutePolicy(avoid_nodes=frozenset({"B"}))) == [["A", "D", "E", "C"]]
    assert c.paths("A", "C", RoutePolicy(min_rate_bps=2000)) == [["A", "D", "E", "C"]]
    with pytest.raises(RoutingError, match="security level >= 3"):
        c.paths("A", "C", RoutePolicy(min_security_level=3))
    with pytest.raises(RoutingError, match="via/avoid"):
        c.paths("A", "C", RoutePolicy(via_nodes=frozenset({"D"})))
    with pytest.raises(RoutingError, match=">= 9000 bits/s"):
        c.paths("A", "C", RoutePolicy(min_rate_bps=9000))
    c.set_node_trusted("B", False)
    assert c.paths("A", "C") == [["A", "D", "E", "C"]]
    c.set_node_up("D", False)
    with pytest.raises(RoutingError, match="trusted nodes"):
        c.paths("A", "C")
    with pytest.raises(RoutingError, match="node D is down"):
        c.paths("A", "D")


def test_find_paths_accepts_keys_style_policy() -> None:
    class RelayPolicy:  # the attribute names of qkdnet.keys.RelayPolicy
        paths = 2
        allowed_nodes = None
        avoided_nodes = ("X",)

    c = line_with_bypass()
    assert sorted(map(tuple, c.router("A", "C", RelayPolicy()))) == [
        ("A", "B", "C"), ("A", "D", "E", "C")
    ]
    assert find_paths(c.km, "A", "B", RoutePolicy()) == [["A", "B"]]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_fast_path_agrees_with_generic_search(seed: int) -> None:
    c = random_controller(seed, n=10, p=0.35)
    rng = np.random.default_rng(seed)
    for lid in rng.choice(list(c.links), size=min(3, len(c.links)), replace=False):
        c.set_link_up(str(lid), False)
    c.set_node_trusted(f"n{int(rng.integers(2, 10))}", False)
    for s, t in [("n0", "n1"), ("n2", "n3"), ("n0", "n5")]:
        try:
            generic = find_paths(c.km, s, t, RoutePolicy())
        except RoutingError as exc:
            with pytest.raises(RoutingError) as info:
                c.paths(s, t)
            assert str(info.value) == str(exc)
            continue
        assert length(c, c.paths(s, t)[0]) == pytest.approx(length(c, generic[0]), rel=1e-6)
