"""Path finding for key relay over trusted nodes (the QKDN control layer of ITU-T Y.3804).

The graph is the key-management view: one edge per pair of nodes joined by at least one
QKD link (parallel links are aggregated), with attributes ``length_km`` (shortest parallel
link in service), ``rate_bps`` and ``pool_bits`` (sums over parallel links in service) and
``in_service``; nodes carry ``up``, ``trusted`` and ``security_level``.

Three metrics: ``shortest`` (Dijkstra on fibre length), ``widest`` (the path whose
bottleneck ``pool_bits + rate_bps * horizon_s`` is largest: a key-aware metric), and k
node-disjoint paths (greedy successive shortest paths, falling back to max-flow
(networkx ``node_disjoint_paths``) when greedy finds too few). A request fails only when
no allowed path remains, with a :class:`~qkdnet.errors.RoutingError` naming the
constraint that removed the last path.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import Callable
from typing import Any

import networkx as nx

from qkdnet.control.model import RoutePolicy
from qkdnet.errors import RoutingError

EdgeOk = Callable[[str, str, dict[str, Any]], bool]
NodeOk = Callable[[str], bool]


def _predicates(
    km: nx.Graph, source: str, target: str, policy: RoutePolicy, stage: int
) -> tuple[NodeOk, EdgeOk]:
    """Node and edge filters, applying constraints up to ``stage`` (for diagnosis)."""
    nodes = km.nodes

    def node_ok(n: str) -> bool:
        if n in (source, target):
            return True
        data = nodes[n]
        if stage >= 1 and not data.get("up", True):
            return False
        if stage >= 2 and not data.get("trusted", True):
            return False
        if stage >= 3 and n in policy.avoid_nodes:
            return False
        if stage >= 3 and policy.via_nodes and n not in policy.via_nodes:
            return False
        return not (stage >= 4 and data.get("security_level", 1) < policy.min_security_level)

    def edge_ok(u: str, v: str, data: dict[str, Any]) -> bool:
        if stage >= 1 and not data.get("in_service", True):
            return False
        return not (stage >= 5 and data.get("rate_bps", 0.0) < policy.min_rate_bps)

    return node_ok, edge_ok


STAGE_REASON = {
    0: "no physical path between {s} and {t}",
    1: "no path between {s} and {t} over links in service and nodes up",
    2: "no path between {s} and {t} through trusted nodes",
    3: "no path between {s} and {t} through the allowed nodes (via/avoid policy)",
    4: "no path between {s} and {t} through nodes of security level >= {lvl}",
    5: "no path between {s} and {t} whose links all deliver >= {rate} bits/s",
}
FULL = 5


def _shortest(km: nx.Graph, s: str, t: str, node_ok: NodeOk, edge_ok: EdgeOk) -> list[str] | None:
    def weight(u: str, v: str, data: dict[str, Any]) -> float | None:
        if not edge_ok(u, v, data) or not node_ok(v) or not node_ok(u):
            return None
        return float(data.get("length_km", 1.0)) + 1e-6  # + tiny: fewer hops break ties

    try:
        return list(nx.dijkstra_path(km, s, t, weight=weight))
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None


def _widest(
    km: nx.Graph, s: str, t: str, node_ok: NodeOk, edge_ok: EdgeOk, horizon_s: float
) -> list[str] | None:
    """Maximum-bottleneck path (modified Dijkstra); ties go to the shorter path."""
    best: dict[str, float] = {s: float("inf")}
    dist: dict[str, float] = {s: 0.0}
    prev: dict[str, str] = {}
    counter = itertools.count()
    heap: list[tuple[float, float, int, str]] = [(-float("inf"), 0.0, next(counter), s)]
    done: set[str] = set()
    while heap:
        neg_width, d, _, u = heapq.heappop(heap)
        if u in done:
            continue
        done.add(u)
        if u == t:
            break
        if u != s and not node_ok(u):
            continue
        for v, data in km.adj[u].items():
            if v in done or not edge_ok(u, v, data) or not node_ok(v):
                continue
            cap = float(data.get("pool_bits", 0.0)) + float(data.get("rate_bps", 0.0)) * horizon_s
            width = min(-neg_width, cap)
            nd = d + float(data.get("length_km", 1.0))
            if width > best.get(v, -1.0) or (width == best.get(v) and nd < dist[v]):
                best[v] = width
                dist[v] = nd
                prev[v] = u
                heapq.heappush(heap, (-width, nd, next(counter), v))
    if t not in done:
        return None
    path = [t]
    while path[-1] != s:
        path.append(prev[path[-1]])
    return path[::-1]


def _disjoint(
    km: nx.Graph, s: str, t: str, k: int, node_ok: NodeOk, edge_ok: EdgeOk, policy: RoutePolicy
) -> list[list[str]]:
    """Up to k node-disjoint paths: greedy first, max-flow when greedy finds too few."""
    found: list[list[str]] = []
    used_nodes: set[str] = set()
    used_direct = False

    def n_ok(n: str) -> bool:
        return n not in used_nodes and node_ok(n)

    def e_ok(u: str, v: str, data: dict[str, Any]) -> bool:
        if used_direct and {u, v} == {s, t}:
            return False
        return edge_ok(u, v, data)

    for _ in range(k):
        if policy.metric == "widest":
            path = _widest(km, s, t, n_ok, e_ok, policy.horizon_s)
        else:
            path = _shortest(km, s, t, n_ok, e_ok)
        if path is None:
            break
        found.append(path)
        used_nodes.update(path[1:-1])
        used_direct = used_direct or len(path) == 2
    if len(found) >= k or k == 1:
        return found
    # Greedy can block itself; max-flow finds the largest disjoint set if it exists.
    allowed = nx.Graph()
    allowed.add_nodes_from(n for n in km.nodes if node_ok(n))
    allowed.add_edges_from(
        (u, v, d) for u, v, d in km.edges(data=True)
        if edge_ok(u, v, d) and u in allowed and v in allowed
    )
    if s not in allowed or t not in allowed:
        return found
    paths: list[list[str]] = []
    if allowed.has_edge(s, t):
        paths.append([s, t])
        allowed.remove_edge(s, t)
    with contextlib.suppress(nx.NetworkXNoPath, nx.NetworkXError):
        paths.extend(list(p) for p in nx.node_disjoint_paths(allowed, s, t))

    def length(p: list[str]) -> float:
        return sum(km.edges[u, v].get("length_km", 1.0) for u, v in zip(p, p[1:], strict=False))

    paths.sort(key=length)
    return paths[:k] if len(paths) > len(found) else found


def find_paths(km: nx.Graph, source: str, target: str, policy: RoutePolicy) -> list[list[str]]:
    """``policy.paths`` allowed relay paths from ``source`` to ``target`` (lists of node
    ids, end points included), best first.

    Raises RoutingError naming the constraint that left no path (or fewer disjoint paths
    than requested).
    """
    for end in (source, target):
        if end not in km:
            raise RoutingError(f"unknown node {end!r}")
        if not km.nodes[end].get("up", True):
            raise RoutingError(f"node {end} is down")
    if source == target:
        raise RoutingError(f"source and target are the same node {source!r}")
    node_ok, edge_ok = _predicates(km, source, target, policy, FULL)
    if policy.paths == 1:
        if policy.metric == "widest":
            path = _widest(km, source, target, node_ok, edge_ok, policy.horizon_s)
        else:
            path = _shortest(km, source, target, node_ok, edge_ok)
        paths = [] if path is None else [path]
    else:
        paths = _disjoint(km, source, target, policy.paths, node_ok, edge_ok, policy)
    if len(paths) >= policy.paths:
        return paths
    if paths:
        raise RoutingError(
            f"only {len(paths)} node-disjoint path(s) between {source} and {target} satisfy "
            f"the policy, {policy.paths} requested"
        )
    raise RoutingError(diagnose(km, source, target, policy))


def diagnose(km: nx.Graph, source: str, target: str, policy: RoutePolicy) -> str:
    """The first constraint (physical, in service, trusted, via/avoid, security level,
    rate) under which ``source`` and ``target`` are no longer connected."""
    for stage in range(FULL + 1):
        node_ok, edge_ok = _predicates(km, source, target, policy, stage)
        if _shortest(km, source, target, node_ok, edge_ok) is None:
            return STAGE_REASON[stage].format(
                s=source, t=target, lvl=policy.min_security_level, rate=policy.min_rate_bps
            )
    return f"no path between {source} and {target} satisfies the policy"
