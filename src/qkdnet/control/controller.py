"""The QKDN controller: topology, link and node state, routing, rerouting, tenants, alarms.

After ITU-T Y.3804 (control and management of QKD networks) with the names of ETSI GS
QKD 015. The controller decides paths; the key managers (``qkdnet.keys``) carry them out:
``controller.router`` is the path finder a :class:`~qkdnet.keys.KeyManager` takes.

Rerouting: when a link goes out of service (fibre cut, or a QBER above the threshold) or
a node goes down, every open route that crossed it is recomputed at once; a route fails
only when no allowed path is left, and keeps the reason. When the element comes back,
routes that were displaced or left without a path are recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from qkdnet.control._fast import ServiceGraph
from qkdnet.control.model import (
    Alarm,
    AlarmKind,
    LinkState,
    NodeState,
    Route,
    RouteChange,
    RoutePolicy,
    VirtualLink,
    path_links,
)
from qkdnet.control.routing import STAGE_REASON, find_paths
from qkdnet.errors import ParameterError, RoutingError


@dataclass
class Reservation:
    """A tenant's admitted key rate between two nodes along ``path`` (bits/s)."""

    tenant: str
    a: str
    b: str
    rate_bps: float
    path: list[str]
    met: bool = True
    #: Link key each hop spends for it, bits/s: the rate plus overheads such as the
    #: authentication of relay messages (what admission books on every hop).
    hop_rate_bps: float = 0.0

    def __post_init__(self) -> None:
        self.hop_rate_bps = max(self.hop_rate_bps, self.rate_bps)


@dataclass
class Tenant:
    """A virtual QKD network: reservations on the shared physical network."""

    tenant_id: str
    allowed_nodes: frozenset[str] = frozenset()
    reservations: list[Reservation] = field(default_factory=list)

    def policy(self) -> RoutePolicy:
        """The routing constraint the tenant imposes on its requests."""
        return RoutePolicy(via_nodes=self.allowed_nodes)


class _PathIndex:
    """Which routes cross each node pair and each node (so an event touches only those)."""

    def __init__(self) -> None:
        self.by_pair: dict[frozenset[str], set[str]] = {}
        self.by_node: dict[str, set[str]] = {}

    def add(self, route_id: str, paths: list[list[str]]) -> None:
        for path in paths:
            for node in path:
                self.by_node.setdefault(node, set()).add(route_id)
            for pair in path_links(path):
                self.by_pair.setdefault(pair, set()).add(route_id)

    def remove(self, route_id: str, paths: list[list[str]]) -> None:
        for path in paths:
            for node in path:
                self.by_node.get(node, set()).discard(route_id)
            for pair in path_links(path):
                self.by_pair.get(pair, set()).discard(route_id)

    def hits(self, pairs: set[frozenset[str]], nodes: set[str]) -> set[str]:
        found: set[str] = set()
        for pair in pairs:
            found |= self.by_pair.get(pair, set())
        for node in nodes:
            found |= self.by_node.get(node, set())
        return found


class Controller:
    """The network's view and its routing decisions.

    ``qber_threshold``: a link whose QBER exceeds it is alarmed and taken out of service.
    ``pool_low_fraction``: a pool below this fraction of its capacity raises an alarm.
    """

    def __init__(self, *, qber_threshold: float = 0.11, pool_low_fraction: float = 0.01) -> None:
        if not 0.0 <= qber_threshold <= 0.5:
            raise ParameterError("qber_threshold", f"must be in [0, 0.5], got {qber_threshold}")
        if not 0.0 <= pool_low_fraction <= 1.0:
            raise ParameterError(
                "pool_low_fraction", f"must be in [0, 1], got {pool_low_fraction}"
            )
        self.qber_threshold = qber_threshold
        self.pool_low_fraction = pool_low_fraction
        self.nodes: dict[str, NodeState] = {}
        self.links: dict[str, LinkState] = {}
        self.graph = nx.MultiGraph()
        self.km = nx.Graph()
        self.routes: dict[str, Route] = {}
        self.tenants: dict[str, Tenant] = {}
        self.alarms: list[Alarm] = []
        self.route_changes: list[RouteChange] = []
        self._active: set[tuple[AlarmKind, str]] = set()
        self._displaced: set[str] = set()
        self._reserved: dict[frozenset[str], float] = {}
        self._link_order: list[str] = []
        self._pool_low = np.zeros(0, dtype=bool)
        self._fast: ServiceGraph | None = None
        #: Key-management graph with each edge's unreserved rate (admission control),
        #: kept between reservations and dropped when the network changes.
        self._residual: nx.Graph | None = None
        self._preferred: dict[str, list[list[str]]] = {}
        self._current = _PathIndex()
        self._pref_index = _PathIndex()
        self._failed: set[str] = set()
        self._pair_of_link: list[int] = []
        self._pairs: dict[frozenset[str], int] = {}
        self._pair_data: list[dict[str, Any]] = []
        self._pair_ends: list[tuple[str, str]] = []
        self._topology_arrays: tuple[list[str], dict[str, int], np.ndarray, np.ndarray] | None = (
            None)

    # ------------------------------------------------------------------ topology

    def add_node(
        self,
        qkdn_id: str,
        *,
        trusted: bool = True,
        security_level: int = 1,
        lat: float | None = None,
        lon: float | None = None,
    ) -> NodeState:
        """Add a QKD node."""
        if qkdn_id in self.nodes:
            raise ParameterError("qkdn_id", f"node {qkdn_id!r} already exists")
        node = NodeState(qkdn_id, trusted=trusted, security_level=security_level, lat=lat, lon=lon)
        self.nodes[qkdn_id] = node
        self.graph.add_node(qkdn_id)
        self.km.add_node(qkdn_id, up=True, trusted=trusted, security_level=security_level)
        self._fast = None
        self._residual = None
        self._topology_arrays = None
        return node

    def set_node_trusted(
        self, qkdn_id: str, trusted: bool, time_s: float = 0.0
    ) -> list[RouteChange]:
        """Change whether a node may relay keys; routes through a node no longer trusted
        move at once."""
        node = self.nodes.get(qkdn_id)
        if node is None:
            raise ParameterError("qkdn_id", f"unknown node {qkdn_id!r}")
        if node.trusted == trusted:
            return []
        node.trusted = trusted
        self.km.nodes[qkdn_id]["trusted"] = trusted
        self._fast = None
        self._residual = None
        reason = f"node {qkdn_id} {'trusted' if trusted else 'no longer trusted'}"
        if trusted:
            return self._restore(time_s, reason, set(), {qkdn_id})
        return self._reroute_affected(time_s, set(), {qkdn_id}, reason)

    def add_link(
        self,
        qkdl_id: str,
        a: str,
        b: str,
        *,
        length_km: float,
        key_rate_bps: float,
        qber: float = 0.0,
        pool_bits: float = 0.0,
        pool_capacity_bits: float = 1e9,
    ) -> LinkState:
        """Add a direct QKD link between nodes ``a`` and ``b`` (length km, rate bits/s)."""
        if qkdl_id in self.links:
            raise ParameterError("qkdl_id", f"link {qkdl_id!r} already exists")
        for end in (a, b):
            if end not in self.nodes:
                raise ParameterError("qkdl_id", f"link {qkdl_id!r}: unknown node {end!r}")
        link = LinkState(
            qkdl_id, a, b, length_km=length_km, key_rate_bps=key_rate_bps, qber=qber,
            pool_bits=pool_bits, pool_capacity_bits=pool_capacity_bits,
        )
        link.qber_alarm = qber > self.qber_threshold
        self.links[qkdl_id] = link
        self._link_order.append(qkdl_id)
        self._pool_low = np.append(self._pool_low, False)
        self.graph.add_edge(a, b, key=qkdl_id)
        self._refresh_pair(a, b)
        pair = frozenset((a, b))
        if pair not in self._pairs:
            self._pairs[pair] = len(self._pair_data)
            self._pair_data.append(self.km.edges[a, b])
            self._pair_ends.append((a, b))
            self._topology_arrays = None
        self._pair_of_link.append(self._pairs[pair])
        self._fast = None
        self._residual = None
        return link

    def _service_graph(self) -> ServiceGraph:
        """The compiled snapshot for fast paths, rebuilt after state changes (O(edges) in
        NumPy; the fixed topology arrays are built once)."""
        if self._fast is None:
            if self._topology_arrays is None:
                names = list(self.km.nodes)
                index = {n: i for i, n in enumerate(names)}
                u = np.array([index[a] for a, _ in self._pair_ends], dtype=np.int64)
                v = np.array([index[b] for _, b in self._pair_ends], dtype=np.int64)
                self._topology_arrays = (names, index, u, v)
            names, index, u, v = self._topology_arrays
            length = np.array([d["length_km"] for d in self._pair_data], dtype=np.float64)
            service = np.array([d["in_service"] for d in self._pair_data], dtype=bool)
            up = np.array([self.nodes[n].up for n in names], dtype=bool)
            trusted = np.array([self.nodes[n].trusted for n in names], dtype=bool)
            self._fast = ServiceGraph(names, index, u, v, length, service, up, trusted)
        return self._fast

    def link_ids(self) -> list[str]:
        """Link ids in the order they were added (the order of bulk arrays)."""
        return list(self._link_order)

    def _parallel(self, a: str, b: str) -> list[LinkState]:
        if not self.graph.has_edge(a, b):
            return []
        return [self.links[k] for k in self.graph[a][b]]

    def _refresh_pair(self, a: str, b: str) -> None:
        """Recompute the aggregated key-management edge between a and b."""
        self._residual = None
        links = [ln for ln in self._parallel(a, b) if ln.in_service]
        every = self._parallel(a, b)
        if not every:
            return
        self.km.add_edge(
            a,
            b,
            in_service=bool(links),
            length_km=min((ln.length_km for ln in links or every), default=0.0),
            rate_bps=sum(ln.key_rate_bps for ln in links),
            pool_bits=sum(ln.pool_bits for ln in links),
        )

    # ------------------------------------------------------------------ routing

    def paths(self, source: str, target: str, policy: Any = None) -> list[list[str]]:
        """Relay paths (lists of node ids) from source to target under ``policy``.

        This is the router a KeyManager takes. ``policy`` is a RoutePolicy or any object
        with like-named attributes (``qkdnet.keys.RelayPolicy``). Raises RoutingError.
        """
        pol = RoutePolicy.from_any(policy)
        if source in self.km and target in self.km and source != target and all(
            self.km.nodes[n].get("up", True) for n in (source, target)
        ):
            fast = self._service_graph()
            stage = fast.connected_stage(source, target)
            if stage == 2 and not fast.handles(source, target):
                stage = -1  # an untrusted end point: its own edges are allowed, search
            if stage >= 0:
                raise RoutingError(STAGE_REASON[stage].format(
                    s=source, t=target, lvl=pol.min_security_level, rate=pol.min_rate_bps))
            plain = (pol.metric == "shortest" and pol.paths == 1 and not pol.via_nodes
                     and not pol.avoid_nodes and pol.min_rate_bps == 0.0
                     and pol.min_security_level == 0)
            if plain and fast.handles(source, target):
                path = fast.shortest(source, target)
                if path is not None:
                    return [path]
        return find_paths(self.km, source, target, pol)

    @property
    def router(self) -> Any:
        """The callable ``(source, target, policy) -> list of paths`` for KeyManager."""
        return self.paths

    def open_route(
        self,
        route_id: str,
        source: str,
        target: str,
        policy: RoutePolicy | None = None,
        *,
        tenant: str | None = None,
    ) -> Route:
        """Open (or replace) a relay route the controller keeps and reroutes.

        A route without an allowed path is kept with ``failure`` set (it is retried when
        the network changes); ``paths`` is then empty.
        """
        pol = policy or RoutePolicy()
        if tenant is not None:
            if tenant not in self.tenants:
                raise ParameterError("tenant", f"unknown tenant {tenant!r}")
            pol = pol.merged(self.tenants[tenant].policy())
        self.close_route(route_id)
        route = Route(route_id, source, target, pol, tenant=tenant)
        try:
            route.paths = self._route_paths(route)
        except RoutingError as exc:
            route.failure = str(exc)
            self._failed.add(route_id)
        self._current.add(route_id, route.paths)
        self.routes[route_id] = route
        return route

    def reservation_for(self, route: Route) -> Reservation | None:
        """The admitted reservation a route relays along, if any: the route's tenant holds
        one between its two end nodes, the route takes one path and the reservation's
        path is allowed by the route's policy (the reserved rate is booked on that path,
        so the route must follow it for the reservation to be met)."""
        if route.tenant is None or route.policy.paths != 1:
            return None
        tenant = self.tenants.get(route.tenant)
        if tenant is None:
            return None
        ends = {route.source, route.target}
        pol = route.policy
        for res in tenant.reservations:
            if not res.met or {res.a, res.b} != ends:
                continue
            inner = set(res.path[1:-1])
            if set(res.path) & pol.avoid_nodes:
                continue
            if pol.via_nodes and not inner <= pol.via_nodes:
                continue
            return res
        return None

    def _route_paths(self, route: Route) -> list[list[str]]:
        """A route's paths: its reservation's path when it follows one, else the router's."""
        res = self.reservation_for(route)
        if res is not None:
            path = list(res.path)
            return [path if path[0] == route.source else path[::-1]]
        return self.paths(route.source, route.target, route.policy)

    def close_route(self, route_id: str) -> None:
        """Forget a route."""
        route = self.routes.pop(route_id, None)
        if route is not None:
            self._current.remove(route_id, route.paths)
        self._displaced.discard(route_id)
        self._failed.discard(route_id)
        self._forget_preferred(route_id)

    def _forget_preferred(self, route_id: str) -> None:
        preferred = self._preferred.pop(route_id, None)
        if preferred:
            self._pref_index.remove(route_id, preferred)

    def _recompute(self, route: Route, time_s: float, reason: str) -> RouteChange | None:
        old = tuple(tuple(p) for p in route.paths)
        self._current.remove(route.route_id, route.paths)
        try:
            route.paths = self._route_paths(route)
            route.failure = None
            self._failed.discard(route.route_id)
        except RoutingError as exc:
            route.paths = []
            route.failure = str(exc)
            self._failed.add(route.route_id)
        self._current.add(route.route_id, route.paths)
        new = tuple(tuple(p) for p in route.paths)
        if new == old:
            return None
        why = reason if route.failure is None else f"{reason}; {route.failure}"
        change = RouteChange(time_s, route.route_id, old, new, why)
        self.route_changes.append(change)
        if not new and old:
            self._raise(time_s, AlarmKind.ROUTE_LOST, route.route_id, why)
        elif new and not old:
            self._clear(time_s, AlarmKind.ROUTE_LOST, route.route_id, "path restored")
        return change

    def _reroute_affected(self, time_s: float, pairs: set[frozenset[str]], nodes: set[str],
                          reason: str) -> list[RouteChange]:
        # Reservations first, so that the routes following one move with it.
        readmitted = self._readmit_reservations(time_s, pairs, nodes, reason)
        changes = []
        for route_id in sorted(self._current.hits(pairs, nodes)):
            route = self.routes[route_id]
            before = [list(p) for p in route.paths]
            change = self._recompute(route, time_s, reason)
            if change is not None:
                changes.append(change)
                if route_id not in self._displaced:
                    self._preferred[route_id] = before
                    self._pref_index.add(route_id, before)
                self._displaced.add(route_id)
        return changes + readmitted

    def _restore(self, time_s: float, reason: str, pairs: set[frozenset[str]],
                 nodes: set[str]) -> list[RouteChange]:
        """After a repair: retry routes without a path, and move back the displaced routes
        whose preferred path (the one before their first displacement) crosses the
        repaired element. Other displaced routes wait for a repair on their own path."""
        changes = []
        retry = set(self._failed) | self._pref_index.hits(pairs, nodes)
        for route_id in sorted(retry):
            route = self.routes.get(route_id)
            if route is None:
                continue
            change = self._recompute(route, time_s, reason)
            if change is not None:
                changes.append(change)
                self._displaced.add(route_id)
                self._preferred.setdefault(route_id, [])
            if route.paths and route.paths == self._preferred.get(route_id):
                self._displaced.discard(route_id)
                self._forget_preferred(route_id)
        for res in self._retry_unmet(time_s):
            # A reservation admitted again: the routes of its tenant's pair follow it.
            for route in list(self.routes.values()):
                if (route.tenant == res.tenant and {route.source, route.target} == {res.a, res.b}
                        and self.reservation_for(route) is res):
                    change = self._recompute(route, time_s, "reservation admitted again")
                    if change is not None:
                        changes.append(change)
        return changes

    def reoptimise(self, time_s: float, metric: str = "widest") -> list[RouteChange]:
        """Recompute every route using ``metric`` (periodic key-aware rerouting)."""
        changes = []
        for route in self.routes.values():
            if route.policy.metric == metric:
                change = self._recompute(route, time_s, "key-aware re-optimisation")
                if change is not None:
                    changes.append(change)
        return changes

    # ------------------------------------------------------------------ state changes

    def set_link_up(self, qkdl_id: str, up: bool, time_s: float = 0.0) -> list[RouteChange]:
        """A link goes down (fibre cut) or comes back; routes move at once."""
        link = self._link(qkdl_id)
        if link.up == up:
            return []
        was = link.in_service
        link.up = up
        if up:
            self._clear(time_s, AlarmKind.LINK_DOWN, qkdl_id, "link up")
        else:
            self._raise(time_s, AlarmKind.LINK_DOWN, qkdl_id, "link down")
        reason = f"link {qkdl_id} {'up' if up else 'down'}"
        return self._after_link_change(link, was, time_s, reason)

    def report_qber(self, qkdl_id: str, qber: float, time_s: float = 0.0) -> list[RouteChange]:
        """A new QBER estimate for a link; above the threshold the link leaves service."""
        link = self._link(qkdl_id)
        was = link.in_service
        link.qber = qber
        alarm = qber > self.qber_threshold
        if alarm == link.qber_alarm:
            return []
        link.qber_alarm = alarm
        if alarm:
            self._raise(time_s, AlarmKind.QBER_HIGH, qkdl_id,
                        f"QBER {qber:.3f} > threshold {self.qber_threshold:.3f}")
        else:
            self._clear(time_s, AlarmKind.QBER_HIGH, qkdl_id, f"QBER {qber:.3f}")
        word = "alarm" if alarm else "cleared"
        return self._after_link_change(link, was, time_s, f"QBER {word} on {qkdl_id}")

    def set_node_up(self, qkdn_id: str, up: bool, time_s: float = 0.0) -> list[RouteChange]:
        """A node goes down or comes back; routes through it move at once."""
        node = self.nodes.get(qkdn_id)
        if node is None:
            raise ParameterError("qkdn_id", f"unknown node {qkdn_id!r}")
        if node.up == up:
            return []
        node.up = up
        self.km.nodes[qkdn_id]["up"] = up
        self._fast = None
        self._residual = None
        reason = f"node {qkdn_id} {'up' if up else 'down'}"
        if up:
            self._clear(time_s, AlarmKind.NODE_DOWN, qkdn_id, reason)
            return self._restore(time_s, reason, set(), {qkdn_id})
        self._raise(time_s, AlarmKind.NODE_DOWN, qkdn_id, reason)
        return self._reroute_affected(time_s, set(), {qkdn_id}, reason)

    def _after_link_change(self, link: LinkState, was: bool, time_s: float,
                           reason: str) -> list[RouteChange]:
        a, b = link.ends()
        before = self.km.edges[a, b]["in_service"]
        self._refresh_pair(a, b)
        after = self.km.edges[a, b]["in_service"]
        self._fast = None  # the edge's length may have changed even if still in service
        self._residual = None
        if before and not after:
            return self._reroute_affected(time_s, {frozenset((a, b))}, set(), reason)
        if after and not before:
            return self._restore(time_s, reason, {frozenset((a, b))}, set())
        return []

    def set_link_metrics(self, qkdl_id: str, *, key_rate_bps: float | None = None,
                         pool_bits: float | None = None) -> None:
        """Telemetry from a link: its current secret key rate (bits/s) and pool (bits)."""
        link = self._link(qkdl_id)
        if key_rate_bps is not None:
            link.key_rate_bps = key_rate_bps
        if pool_bits is not None:
            link.pool_bits = pool_bits
        self._refresh_pair(*link.ends())

    def set_pool_levels(self, pool_bits: np.ndarray, time_s: float = 0.0) -> list[Alarm]:
        """Bulk telemetry: every link's pool (bits), in ``link_ids()`` order.

        Updates the key-aware routing metric and raises or clears pool-low alarms;
        returns the alarms raised or cleared now.
        """
        pool_bits = np.asarray(pool_bits, dtype=np.float64)
        if pool_bits.shape != (len(self._link_order),):
            raise ParameterError("pool_bits", f"needs {len(self._link_order)} values")
        caps = np.array([self.links[k].pool_capacity_bits for k in self._link_order])
        low = pool_bits < self.pool_low_fraction * caps
        changed = np.flatnonzero(low != self._pool_low)
        n_before = len(self.alarms)
        for i in changed:
            lid = self._link_order[i]
            if low[i]:
                msg = f"pool {pool_bits[i]:.0f} bits < {self.pool_low_fraction:.0%} of capacity"
                self._raise(time_s, AlarmKind.POOL_LOW, lid, msg)
            else:
                self._clear(time_s, AlarmKind.POOL_LOW, lid, "pool refilled")
        self._pool_low = low
        in_service = np.array([self.links[k].in_service for k in self._link_order], dtype=bool)
        sums = np.bincount(self._pair_of_link, weights=np.where(in_service, pool_bits, 0.0),
                           minlength=len(self._pair_data))
        for lid, value in zip(self._link_order, pool_bits.tolist(), strict=True):
            self.links[lid].pool_bits = value
        for data, value in zip(self._pair_data, sums.tolist(), strict=True):
            data["pool_bits"] = value
        return self.alarms[n_before:]

    def _link(self, qkdl_id: str) -> LinkState:
        link = self.links.get(qkdl_id)
        if link is None:
            raise ParameterError("qkdl_id", f"unknown link {qkdl_id!r}")
        return link

    # ------------------------------------------------------------------ alarms

    def _raise(self, time_s: float, kind: AlarmKind, element: str, message: str) -> None:
        if (kind, element) in self._active:
            return
        self._active.add((kind, element))
        self.alarms.append(Alarm(time_s, kind, element, message, active=True))

    def _clear(self, time_s: float, kind: AlarmKind, element: str, message: str) -> None:
        if (kind, element) not in self._active:
            return
        self._active.discard((kind, element))
        self.alarms.append(Alarm(time_s, kind, element, message, active=False))

    def active_alarms(self) -> list[tuple[AlarmKind, str]]:
        """The (kind, element) of every alarm raised and not cleared."""
        return sorted(self._active, key=lambda x: (x[0].value, x[1]))

    def report_delivery(self, tenant_id: str, a: str, b: str, delivered_bps: float,
                        time_s: float, refused_keys: int = 1) -> None:
        """Telemetry: the rate (bits/s) a tenant's pair got over the last interval and how
        many of its key requests were refused. Below the reservation while requests were
        refused → a reservation-unmet alarm (asking for less than reserved is no fault)."""
        for res in self.tenants[tenant_id].reservations:
            if {res.a, res.b} == {a, b}:
                element = f"{tenant_id}:{a}-{b}"
                if delivered_bps < res.rate_bps and refused_keys > 0:
                    msg = f"delivered {delivered_bps:.0f} b/s < reserved {res.rate_bps:.0f} b/s"
                    self._raise(time_s, AlarmKind.RESERVATION_UNMET, element, msg)
                else:
                    self._clear(time_s, AlarmKind.RESERVATION_UNMET, element, "met")

    def report_reservation(self, tenant_id: str, a: str, b: str, reserved_keys: int,
                           served_keys: int, time_s: float) -> None:
        """Telemetry for one interval: of the keys the tenant's pair asked for within its
        reservation (the reserved part of its requests), how many were served.

        The reservation-unmet alarm is raised exactly when some were refused, or when the
        reservation lost its admission (no path with the reserved rate left), and cleared
        otherwise. Demand above the reservation is best effort and never raises it."""
        if tenant_id not in self.tenants:
            raise ParameterError("tenant_id", f"unknown tenant {tenant_id!r}")
        if not 0 <= served_keys <= reserved_keys:
            raise ParameterError("served_keys", f"must be in [0, {reserved_keys}], "
                                 f"got {served_keys}")
        for res in self.tenants[tenant_id].reservations:
            if {res.a, res.b} == {a, b}:
                element = f"{tenant_id}:{res.a}-{res.b}"
                if not res.met:
                    continue  # the admission alarm stands until it is re-admitted
                if served_keys < reserved_keys:
                    msg = (f"{reserved_keys - served_keys} of {reserved_keys} reserved keys "
                           f"refused")
                    self._raise(time_s, AlarmKind.RESERVATION_UNMET, element, msg)
                else:
                    self._clear(time_s, AlarmKind.RESERVATION_UNMET, element, "met")
                return

    # ------------------------------------------------------------------ tenants

    def add_tenant(self, tenant_id: str, allowed_nodes: Iterable[str] = ()) -> Tenant:
        """Create a tenant (a virtual QKD network)."""
        if tenant_id in self.tenants:
            raise ParameterError("tenant_id", f"tenant {tenant_id!r} already exists")
        tenant = Tenant(tenant_id, frozenset(allowed_nodes))
        self.tenants[tenant_id] = tenant
        return tenant

    def residual_rate_bps(self, a: str, b: str) -> float:
        """Key rate between neighbours a and b not yet reserved by tenants, bits/s."""
        data = self.km.edges[a, b]
        if not data["in_service"]:
            return 0.0
        return float(data["rate_bps"]) - self._reserved.get(frozenset((a, b)), 0.0)

    def _admit_path(self, tenant: Tenant, a: str, b: str, rate_bps: float) -> list[str]:
        residual = self._residual
        if residual is None:
            residual = nx.Graph()
            residual.add_nodes_from(self.km.nodes(data=True))
            for u, v, data in self.km.edges(data=True):
                free = self.residual_rate_bps(u, v)
                residual.add_edge(u, v, in_service=data["in_service"], rate_bps=free,
                                  pool_bits=0.0, length_km=data["length_km"])
            self._residual = residual
        policy = RoutePolicy(min_rate_bps=rate_bps, via_nodes=tenant.allowed_nodes)
        try:
            return find_paths(residual, a, b, policy)[0]
        except RoutingError as exc:
            raise RoutingError(
                f"reservation needing {rate_bps:.0f} b/s of link key per hop between {a} "
                f"and {b} for tenant "
                f"{tenant.tenant_id} refused: {exc}"
            ) from None

    def reserve(self, tenant_id: str, a: str, b: str, rate_bps: float,
                hop_rate_bps: float | None = None) -> Reservation:
        """Admission control: reserve ``rate_bps`` (bits/s of key delivered) between nodes
        a and b for a tenant along a path whose every hop has ``hop_rate_bps`` (bits/s of
        link key the reservation spends per hop, overheads included; default
        ``rate_bps``) not yet reserved, or raise RoutingError saying why it cannot be met."""
        if tenant_id not in self.tenants:
            raise ParameterError("tenant_id", f"unknown tenant {tenant_id!r}")
        if not rate_bps > 0:
            raise ParameterError("rate_bps", f"must be > 0 bits/s, got {rate_bps}")
        hop = rate_bps if hop_rate_bps is None else hop_rate_bps
        if not hop >= rate_bps:
            raise ParameterError("hop_rate_bps", f"must be >= rate_bps ({rate_bps} bits/s), "
                                 f"got {hop}")
        tenant = self.tenants[tenant_id]
        path = self._admit_path(tenant, a, b, hop)
        res = Reservation(tenant_id, a, b, rate_bps, path, hop_rate_bps=hop)
        self._book(res, +1)
        tenant.reservations.append(res)
        return res

    def _book(self, res: Reservation, sign: int) -> None:
        for pair in path_links(res.path):
            self._reserved[pair] = self._reserved.get(pair, 0.0) + sign * res.hop_rate_bps
            if self._residual is not None:
                u, v = tuple(pair)
                self._residual.edges[u, v]["rate_bps"] = self.residual_rate_bps(u, v)

    def _readmit_reservations(self, time_s: float, pairs: set[frozenset[str]], nodes: set[str],
                              reason: str) -> list[RouteChange]:
        changes = []
        for tenant in self.tenants.values():
            for res in tenant.reservations:
                if not res.met:
                    continue
                if set(path_links(res.path)) & pairs or set(res.path) & nodes:
                    old = tuple(res.path)
                    self._book(res, -1)
                    element = f"{tenant.tenant_id}:{res.a}-{res.b}"
                    try:
                        res.path = self._admit_path(tenant, res.a, res.b, res.hop_rate_bps)
                        self._book(res, +1)
                    except RoutingError as exc:
                        res.met = False
                        self._raise(time_s, AlarmKind.RESERVATION_UNMET, element, str(exc))
                    change = RouteChange(time_s, f"reservation {element}", (old,),
                                         (tuple(res.path),) if res.met else (), reason)
                    self.route_changes.append(change)
                    changes.append(change)
        return changes

    def _retry_unmet(self, time_s: float) -> list[Reservation]:
        done = []
        for tenant in self.tenants.values():
            for res in tenant.reservations:
                if res.met:
                    continue
                try:
                    res.path = self._admit_path(tenant, res.a, res.b, res.hop_rate_bps)
                except RoutingError:
                    continue
                res.met = True
                self._book(res, +1)
                self._clear(time_s, AlarmKind.RESERVATION_UNMET,
                            f"{tenant.tenant_id}:{res.a}-{res.b}", "reservation met again")
                done.append(res)
        return done

    # ------------------------------------------------------------------ ETSI 015 view

    def virtual_links(self) -> list[VirtualLink]:
        """Multi-hop routes and reservations as ETSI 015 virtual links."""
        out = []
        for route in self.routes.values():
            for i, path in enumerate(route.paths):
                if len(path) > 2:
                    out.append(VirtualLink(f"{route.route_id}/{i}", path[0], path[-1], tuple(path)))
        for tenant in self.tenants.values():
            for res in tenant.reservations:
                if res.met and len(res.path) > 2:
                    out.append(VirtualLink(f"{tenant.tenant_id}:{res.a}-{res.b}",
                                           res.path[0], res.path[-1], tuple(res.path)))
        return out

    def etsi015(self) -> dict[str, Any]:
        """The network in ETSI GS QKD 015 terms (qkdn_id, qkdl_id, qkdl_type, status)."""
        return {
            "nodes": [
                {"qkdn_id": n.qkdn_id, "qkdn_status": "up" if n.up else "down",
                 "key_relay_mode_enable": n.trusted}
                for n in self.nodes.values()
            ],
            "links": [
                {"qkdl_id": ln.qkdl_id, "qkdl_type": ln.qkdl_type.value,
                 "qkdl_local": {"qkdn_id": ln.local_qkdn_id},
                 "qkdl_remote": {"qkdn_id": ln.remote_qkdn_id},
                 "qkdl_status": "up" if ln.in_service else "down",
                 "qkdl_performance": {"skr": ln.key_rate_bps, "expected_qber": ln.qber}}
                for ln in self.links.values()
            ] + [
                {"qkdl_id": v.qkdl_id, "qkdl_type": v.qkdl_type.value,
                 "qkdl_local": {"qkdn_id": v.local_qkdn_id},
                 "qkdl_remote": {"qkdn_id": v.remote_qkdn_id},
                 "virt_prev_hop": list(v.hops[:-1]), "virt_next_hop": list(v.hops[1:])}
                for v in self.virtual_links()
            ],
        }
