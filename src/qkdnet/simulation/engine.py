"""The simulator: a scenario's network over simulated time.

Design (docs/simulation.md has the long form). The network's control is the real
:class:`qkdnet.control.Controller`: it holds the topology, decides relay paths under each
application's policy, reroutes when links or nodes fail or a QBER alarm takes a link out,
admits tenants' reservations and raises alarms. Time advances in fixed steps
(``simulation.time_step_s``). Between two events (a failure, a repair, a periodic
key-aware reroute) the paths are fixed, so the per-step work — links depositing key,
applications drawing it — is the same small computation over arrays, run in Numba
(``_kernel.run_steps``): O(links + path hops) per step, independent of Python.

Accounting follows the key managers' rules (``qkdnet.keys``):

- key material is counted in **bytes**, as the key stores hold it; a link deposits a
  whole block of ``simulation.block_bits`` bits when a block's worth of secret key has
  been distilled (Kq-1);
- an application's requests of one time step are one batch of ``KeyManager.supply``
  calls of at most ``max_key_per_request`` (128) keys each; a key is served whole or
  refused (ETSI GS QKD 014 enc_keys: all or nothing, KeyExhausted), never half;
- a supply call spends, on **every hop** of its path, the keys' bytes plus
  ``MAC_KEY_BYTES`` (48) of authentication key (hop-by-hop one-time pad with
  Wegman-Carter authenticated relay messages, ITU-T Y.3803, exactly as
  ``qkdnet.keys.manager`` does), and on every hop of every path when ``paths`` > 1
  (node-disjoint paths combined by XOR, X.1714);
- when a key-management link holds less than the step's demand, the applications of a
  priority class crossing it get a proportional share (higher classes first). With one
  application per link this is what sequential ``KeyManager.supply`` calls give; the
  ``keymanager`` engine runs those calls and a test compares the two;
- a tenant's reservation (``rate_bps`` between two nodes) covers only the part of its
  applications' requests within the reserved rate (a token bucket, ``_Reservations``):
  that part is served first, as its own supply calls; the rest is best effort at the
  application's priority, and best effort may not draw a KM link below what the
  reservations crossing it can draw until the link's next block of key arrives.
  Admission books on each hop the reserved key plus its authentication key
  (``reservation_hop_rate``); the reservation-unmet alarm is raised at a telemetry
  tick (and at the end of the run) exactly when some reserved key of the interval was
  refused.

A pool whose link is out of service is frozen, not drawn from, until the link returns.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qkdnet.constants import SECONDS_PER_HOUR
from qkdnet.control import Controller, RouteChange, RoutePolicy
from qkdnet.errors import ParameterError, RoutingError
from qkdnet.keys import MAC_KEY_BYTES
from qkdnet.scenario import ApplicationSpec, DemandProfile, Scenario
from qkdnet.simulation._kernel import run_steps, split_reserved
from qkdnet.simulation.rates import link_rates
from qkdnet.simulation.results import Event, SimulationResult

#: Steps per call of the kernel at most (bounds the request array's memory).
_MAX_STEPS_PER_CALL = 3600
#: Keys per supply call at most: KeyManager's default max_key_per_request (ETSI 014).
MAX_KEYS_PER_CALL = 128

Progress = Callable[[float], None]


@dataclass(order=True)
class _Scheduled:
    step: int
    seq: int
    action: str = field(compare=False)
    element: str = field(compare=False)
    value: float = field(compare=False, default=0.0)


def demand_rate(profile: DemandProfile, times_s: np.ndarray) -> np.ndarray:
    """Mean keys per second an application asks for at each time (s since midnight)."""
    t = np.asarray(times_s, dtype=np.float64)
    if profile.kind == "constant":
        return np.full(t.shape, profile.rate_keys_per_s)
    if profile.kind == "diurnal":
        hours = (t / SECONDS_PER_HOUR) % 24.0
        # 1 at the peak hour, 1 - amplitude twelve hours away (a raised cosine).
        dip = 0.5 * (1.0 - np.cos(2.0 * np.pi * (hours - profile.peak_hour) / 24.0))
        return profile.rate_keys_per_s * (1.0 - profile.amplitude * dip)
    starts = np.array([s for s, _ in profile.steps])
    rates = np.array([r for _, r in profile.steps])
    order = np.argsort(starts)
    starts, rates = starts[order], rates[order]
    idx = np.searchsorted(starts, t, side="right") - 1
    return np.where(idx >= 0, rates[np.clip(idx, 0, None)], 0.0)


def build_controller(scenario: Scenario, rates_bps: np.ndarray, qbers: np.ndarray) -> Controller:
    """The Controller for a scenario's network, links at the given rates (bits/s)."""
    sim = scenario.simulation
    ctl = Controller(qber_threshold=sim.qber_threshold, pool_low_fraction=sim.pool_low_fraction)
    for node in scenario.nodes:
        ctl.add_node(node.id, trusted=node.trusted, security_level=node.security_level,
                     lat=node.lat, lon=node.lon)
    for link, rate, qber in zip(scenario.links, rates_bps, qbers, strict=True):
        ctl.add_link(link.id, link.a, link.b, length_km=link.length_km,
                     key_rate_bps=float(rate), qber=float(qber),
                     pool_bits=link.initial_pool_bits,
                     pool_capacity_bits=link.pool_capacity_bits)
    for tenant in scenario.tenants:
        ctl.add_tenant(tenant.id, tenant.allowed_nodes)
    return ctl


def app_policy(app: ApplicationSpec) -> RoutePolicy:
    """The routing policy of an application."""
    return RoutePolicy(
        metric=app.routing, paths=app.paths, via_nodes=frozenset(app.via_nodes),
        avoid_nodes=frozenset(app.avoid_nodes), min_rate_bps=app.min_rate_bps,
        min_security_level=app.min_security_level,
    )


def schedule_failures(scenario: Scenario, duration_s: float, dt: float,
                      rng: np.random.Generator) -> list[_Scheduled]:
    """Failures and repairs as step-indexed events; random ones drawn from MTBF/MTTR
    (exponential times, so failures form a Poisson process per element)."""
    events: list[_Scheduled] = []
    seq = 0

    def add(t: float, action: str, element: str, value: float = 0.0) -> None:
        nonlocal seq
        if t < duration_s:
            events.append(_Scheduled(int(math.ceil(t / dt - 1e-9)), seq, action, element, value))
            seq += 1

    for failure in scenario.failures:
        down, up = {
            "link": ("link_down", "link_up"),
            "node": ("node_down", "node_up"),
            "qber": ("qber_high", "qber_clear"),
        }[failure.kind]
        if failure.at_s is not None:
            add(failure.at_s, down, failure.element, failure.qber)
            if failure.repair_after_s is not None:
                add(failure.at_s + failure.repair_after_s, up, failure.element)
            continue
        assert failure.mtbf_s is not None and failure.mttr_s is not None
        if failure.element == "*":
            pool = [n.id for n in scenario.nodes] if failure.kind == "node" else [
                ln.id for ln in scenario.links]
        else:
            pool = [failure.element]
        for element in pool:
            t = 0.0
            while True:
                t += float(rng.exponential(failure.mtbf_s))
                if t >= duration_s:
                    break
                add(t, down, element, failure.qber)
                t += float(rng.exponential(failure.mttr_s)) if failure.mttr_s > 0 else 0.0
                add(t, up, element)
    return events


class _Demand:
    """Every application's demand profile as arrays, evaluated for all at once."""

    def __init__(self, apps: tuple[ApplicationSpec, ...]) -> None:
        self.apps = apps
        kinds = np.array([a.demand.kind for a in apps])
        self.constant = np.flatnonzero(kinds == "constant")
        self.diurnal = np.flatnonzero(kinds == "diurnal")
        self.steps = np.flatnonzero(kinds == "steps")
        self.rate = np.array([a.demand.rate_keys_per_s for a in apps], dtype=np.float64)
        self.amplitude = np.array([a.demand.amplitude for a in apps], dtype=np.float64)
        self.peak = np.array([a.demand.peak_hour for a in apps], dtype=np.float64)
        self.poisson = np.array([a.demand.poisson for a in apps], dtype=bool)

    def mean_keys(self, times_s: np.ndarray) -> np.ndarray:
        """Mean keys per second, array (len(times_s), applications)."""
        out = np.empty((len(times_s), len(self.apps)))
        out[:, self.constant] = self.rate[self.constant]
        if len(self.diurnal):
            d = self.diurnal
            # cos(x - p) = cos x cos p + sin x sin p: two trigonometric calls per time and
            # per application instead of one per (time, application).
            x = 2.0 * np.pi * (times_s / SECONDS_PER_HOUR) / 24.0
            p = 2.0 * np.pi * self.peak[d] / 24.0
            cos_xp = np.outer(np.cos(x), np.cos(p)) + np.outer(np.sin(x), np.sin(p))
            dip = 0.5 * (1.0 - cos_xp)
            out[:, d] = self.rate[d] * (1.0 - self.amplitude[d] * dip)
        for i in self.steps:
            out[:, i] = demand_rate(self.apps[i].demand, times_s)
        return out


class _Network:
    """Arrays the kernel works on, rebuilt from the controller's routes when they change."""

    def __init__(self, scenario: Scenario, ctl: Controller) -> None:
        self.link_index = {ln.id: i for i, ln in enumerate(scenario.links)}
        pairs: dict[frozenset[str], list[int]] = {}
        for i, ln in enumerate(scenario.links):
            pairs.setdefault(frozenset((ln.a, ln.b)), []).append(i)
        self.group_index = {pair: g for g, pair in enumerate(pairs)}
        self.group_ptr = np.zeros(len(pairs) + 1, dtype=np.int64)
        self.group_ptr[1:] = np.cumsum([len(v) for v in pairs.values()])
        self.group_links = np.array([i for v in pairs.values() for i in v], dtype=np.int64)

        self._cache: dict[int, tuple[list[list[str]], np.ndarray]] = {}

    def incidence(self, routes: list[list[list[str]]]) -> tuple[np.ndarray, np.ndarray]:
        """CSR of the key-management links each application's paths cross (cached per
        application: only changed routes are translated again)."""
        parts = []
        for a, paths in enumerate(routes):
            cached = self._cache.get(a)
            if cached is None or cached[0] != paths:
                groups = [self.group_index[frozenset(p)] for path in paths
                          for p in zip(path, path[1:], strict=False)]
                cached = ([list(p) for p in paths], np.array(groups, dtype=np.int64))
                self._cache[a] = cached
            parts.append(cached[1])
        ptr = np.zeros(len(routes) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum([len(p) for p in parts])
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        return ptr, flat.astype(np.int64)


def reservation_hop_rate(scenario: Scenario, app_nodes: list[tuple[str, str]], tenant: str,
                         a: str, b: str, rate_bps: float, dt: float) -> float:
    """Link key (bits/s) a reservation of ``rate_bps`` spends on each hop at most.

    Its applications' reserved keys (``rate_bps / key_size_bits`` a second, whole bytes
    each) plus one relay message's authentication key (``MAC_KEY_BYTES``) per supply call:
    at most one call per key, and per step one per ``MAX_KEYS_PER_CALL`` keys plus one
    per application. ``rate_bps`` when no application uses the reservation.
    """
    pair = frozenset((a, b))
    users = [app for app, ends in zip(scenario.applications, app_nodes, strict=True)
             if app.tenant == tenant and frozenset(ends) == pair]
    if not users:
        return rate_bps
    key_bits = [app.key_size_bits for app in users]
    stored = max(8 * -(-k // 8) / k for k in key_bits)  # whole bytes per key
    keys_per_step = rate_bps * dt / min(key_bits)
    calls_per_step = min(keys_per_step, keys_per_step / MAX_KEYS_PER_CALL + len(users))
    return rate_bps * stored + 8.0 * MAC_KEY_BYTES * calls_per_step / dt


def _steps_per_block(net: _Network, bits_per_step: np.ndarray, block_bits: int) -> np.ndarray:
    """Per KM link (group), the most steps between two deposits of key: a block of
    ``block_bits`` comes whenever the pooled links' production crosses a whole block."""
    total = np.add.reduceat(np.append(bits_per_step[net.group_links], 0.0),
                            net.group_ptr[:-1]) if net.group_links.size else np.zeros(0)
    sizes = np.diff(net.group_ptr)
    total = np.where(sizes > 0, total, 0.0)
    with np.errstate(divide="ignore"):
        steps = np.ceil(block_bits / total - 1e-9)
    return np.where(total > 0, np.maximum(steps, 1.0), 1.0).astype(np.int64)


class _Reservations:
    """Tenants' admitted reservations as the simulator enforces them.

    A reservation of ``rate_bps`` between nodes a and b covers the tenant's applications
    between a and b. Each step, a token bucket per reservation (bits; committed rate and
    burst as in MEF 10.3 / RFC 2697) marks the part of their requests within the reserved
    rate: ``rate_bps * dt`` bits of tokens a step (whole bits, where the cumulative
    amount crosses an integer), capped at ``ceil(rate_bps * dt) + key_bits - 1`` so a
    steady demand at the reserved rate never loses a token; the bucket starts full. That
    part is served first; the rest of the request is best effort. Best effort may not
    draw a KM link below ``protect``: the bytes the reserved applications crossing it can
    draw in one step at most (a full bucket's keys plus one MAC per call, per hop).
    """

    def __init__(self, scenario: Scenario, ctl: Controller, app_nodes: list[tuple[str, str]],
                 class_apps: np.ndarray, dt: float, horizon: np.ndarray) -> None:
        self.ids: list[str] = []
        self.pairs: list[tuple[str, str, str]] = []  # (tenant, a, b)
        rates: list[float] = []
        index: dict[tuple[str, frozenset[str]], int] = {}
        for tenant in ctl.tenants.values():
            for res in tenant.reservations:
                key = (tenant.tenant_id, frozenset((res.a, res.b)))
                if key in index:  # a second reservation on the pair adds to the first
                    rates[index[key]] += res.rate_bps
                    continue
                index[key] = len(rates)
                rates.append(res.rate_bps)
                self.pairs.append((tenant.tenant_id, res.a, res.b))
        apps = scenario.applications
        self.n_apps = len(apps)
        self.of_app = np.full(len(apps), -1, dtype=np.int64)
        for i, app in enumerate(apps):
            if app.tenant is not None:
                self.of_app[i] = index.get((app.tenant, frozenset(app_nodes[i])), -1)
        # Service order among reserved applications: priority, then scenario order.
        self.apps = np.array([a for a in class_apps.tolist() if self.of_app[a] >= 0],
                             dtype=np.int64)
        self.key_bits = np.array([a.key_size_bits for a in apps], dtype=np.int64)
        self.key_bytes = -(-self.key_bits // 8)
        self.per_step = np.array(rates, dtype=np.float64) * dt
        max_bits = np.zeros(len(rates), dtype=np.int64)
        for a in self.apps.tolist():
            r = self.of_app[a]
            max_bits[r] = max(max_bits[r], self.key_bits[a])
        self.cap = np.ceil(self.per_step - 1e-9).astype(np.int64) + np.maximum(max_bits - 1, 0)
        self.tokens = self.cap.copy()
        self.active = self.apps.size > 0
        self.horizon = horizon
        self.step_bits = np.ceil(self.per_step - 1e-9).astype(np.int64)

    def need(self, a: int, steps: np.ndarray) -> np.ndarray:
        """Link-key bytes reserved application ``a`` can draw per hop over ``steps`` steps
        at most: the keys its bucket can pay for (full now, refilled ``steps - 1`` times),
        one MAC per supply call (at most one call per key and per step ``ceil(k/128)``)."""
        r = self.of_app[a]
        bits = self.key_bits[a]
        keys = (self.cap[r] + (steps - 1) * self.step_bits[r]) // bits
        first = self.cap[r] // bits  # most keys in one step
        calls = np.minimum(keys, steps * -(-first // MAX_KEYS_PER_CALL))
        return keys * self.key_bytes[a] + calls * MAC_KEY_BYTES

    def split(self, step: int, requests: np.ndarray) -> np.ndarray:
        """The reserved part of ``requests`` (steps ``step``.. on), shape (n, A), or an
        empty (0, 0) array when no application holds a reservation."""
        if not self.active:
            return np.zeros((0, 0), dtype=np.int64)
        s = np.arange(step, step + requests.shape[0], dtype=np.float64)[:, None]
        add = (np.floor(self.per_step * (s + 1) + 1e-9)
               - np.floor(self.per_step * s + 1e-9)).astype(np.int64)
        return split_reserved(requests, self.apps, self.of_app, self.key_bits,
                              self.tokens, add, self.cap)

    def protect(self, app_ptr: np.ndarray, app_groups: np.ndarray) -> np.ndarray:
        """Bytes best effort must leave on each KM link (group): what the reserved
        applications crossing it can draw until the link's next block of key arrives."""
        out = np.zeros(self.horizon.shape[0], dtype=np.int64)
        for a in self.apps.tolist():
            groups = app_groups[app_ptr[a]: app_ptr[a + 1]]
            np.add.at(out, groups, self.need(a, self.horizon[groups]))
        return out


def simulate(
    scenario: Scenario,
    *,
    duration_s: float | None = None,
    rng: np.random.Generator | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Run a scenario for ``duration_s`` seconds of network time (default: the scenario's).

    ``rng`` defaults to ``np.random.default_rng(scenario.seed)``; demand and random
    failures draw from streams spawned from it. ``progress(t_s)`` is called as simulated
    time advances. Returns a :class:`SimulationResult` with every series and event.
    """
    wall0 = time.perf_counter()
    sim = scenario.simulation
    duration = float(scenario.duration_s if duration_s is None else duration_s)
    if not duration > 0:
        raise ParameterError("duration", f"must be > 0 s, got {duration}")
    dt = float(sim.time_step_s)
    if not dt > 0:
        raise ParameterError("simulation.time_step_s", f"must be > 0 s, got {dt}")
    n_steps = int(math.ceil(duration / dt - 1e-9))
    steps_per_bucket = max(1, int(round(sim.record_every_s / dt)))
    n_buckets = int(math.ceil(n_steps / steps_per_bucket))
    rng = rng if rng is not None else np.random.default_rng(scenario.seed)
    demand_rng, failure_rng, key_rng, link_rng = rng.spawn(4)

    rates_bps, qbers = link_rates(scenario.links, link_rng)
    ctl = build_controller(scenario, rates_bps, qbers)
    net = _Network(scenario, ctl)
    n_links, n_apps = len(scenario.links), len(scenario.applications)
    block_bits = sim.block_bits
    events: list[Event] = []

    # Applications' end nodes (SAEs' nodes).
    app_nodes = []
    sae_node = {sae.id: sae.node for sae in scenario.saes}
    for app in scenario.applications:
        app_nodes.append((sae_node[app.master], sae_node[app.slave]))

    # Reservations first: admission control at t = 0, booking on each hop the link key
    # the reservation spends (its keys plus the authentication of its relay messages).
    for tenant in scenario.tenants:
        for res in tenant.reservations:
            hop = reservation_hop_rate(scenario, app_nodes, tenant.id, res.a, res.b,
                                       res.rate_bps, dt)
            try:
                admitted = ctl.reserve(tenant.id, res.a, res.b, res.rate_bps, hop)
                events.append(Event(0.0, "reservation", f"{tenant.id}:{res.a}-{res.b}",
                                    f"admitted {res.rate_bps:.0f} b/s ({hop:.0f} b/s of link "
                                    f"key per hop) via {'-'.join(admitted.path)}"))
            except RoutingError as exc:
                events.append(Event(0.0, "reservation_refused",
                                    f"{tenant.id}:{res.a}-{res.b}", str(exc)))

    # Routes: one per application, kept and rerouted by the controller.
    for app, (src, dst) in zip(scenario.applications, app_nodes, strict=True):
        if src != dst:
            ctl.open_route(app.id, src, dst, app_policy(app), tenant=app.tenant)
    app_bytes = np.array([-(-a.key_size_bits // 8) for a in scenario.applications],
                         dtype=np.int64)
    block_bytes = -(-block_bits // 8)
    # Service classes: the applications' priorities, high first. A reservation is not a
    # class: only the part of a request within it is served first (``_Reservations``).
    classes = [a.priority for a in scenario.applications]
    prios = sorted(set(classes), reverse=True)
    class_apps = np.array([i for p in prios for i, c in enumerate(classes) if c == p],
                          dtype=np.int64)
    class_ptr = np.zeros(len(prios) + 1, dtype=np.int64)
    class_ptr[1:] = np.cumsum([classes.count(p) for p in prios])
    resv = _Reservations(scenario, ctl, app_nodes, class_apps, dt,
                         _steps_per_block(net, rates_bps * dt, block_bits))

    world = None
    if sim.engine == "keymanager":
        from qkdnet.simulation.km_engine import KeyManagerWorld

        world = KeyManagerWorld(scenario, ctl, key_rng, -(-block_bits // 8), MAX_KEYS_PER_CALL,
                                classes, resv.apps.tolist())

    # State arrays.
    capacity = np.array([int(ln.pool_capacity_bits // 8) for ln in scenario.links],
                        dtype=np.int64)
    pool = np.minimum(capacity, np.array(
        [int(ln.initial_pool_bits // 8) for ln in scenario.links], dtype=np.int64))
    carry = np.zeros(n_links, dtype=np.float64)
    blocks_per_step = rates_bps * dt / block_bits
    served = np.zeros((n_buckets, n_apps), dtype=np.int64)
    no_key = np.zeros((n_buckets, n_apps), dtype=np.int64)
    no_route = np.zeros((n_buckets, n_apps), dtype=np.int64)
    requested = np.zeros((n_buckets, n_apps), dtype=np.int64)
    res_requested = np.zeros((n_buckets, n_apps), dtype=np.int64)
    res_served = np.zeros((n_buckets, n_apps), dtype=np.int64)
    pool_record = np.zeros((n_buckets, n_links), dtype=np.int64)
    in_service_record = np.ones((n_buckets, n_links), dtype=bool)

    # Events: failures, repairs, periodic key-aware rerouting and telemetry.
    queue = schedule_failures(scenario, duration, dt, failure_rng)
    tick_steps = max(1, int(round(sim.reroute_every_s / dt)))
    seq = len(queue)
    for step in range(tick_steps, n_steps, tick_steps):
        queue.append(_Scheduled(step, seq, "telemetry", ""))
        seq += 1
    heapq.heapify(queue)
    has_widest = any(a.routing == "widest" for a in scenario.applications)
    # Per reservation: its applications' reserved keys requested and served until the
    # last telemetry (the reservation-unmet alarm compares the two over each interval).
    last_res = np.zeros((len(resv.pairs), 2), dtype=np.int64)
    n_alarms_seen = 0

    def report_reservations(t: float) -> None:
        # Steps not yet simulated are zero in the count arrays: the sums are up to now.
        for r, (tenant_id, res_a, res_b) in enumerate(resv.pairs):
            mine = resv.of_app == r
            asked = int(res_requested[:, mine].sum())
            got = int(res_served[:, mine].sum())
            ctl.report_reservation(tenant_id, res_a, res_b, asked - int(last_res[r, 0]),
                                   got - int(last_res[r, 1]), t)
            last_res[r] = asked, got

    def flush_alarms() -> None:
        nonlocal n_alarms_seen
        for alarm in ctl.alarms[n_alarms_seen:]:
            kind = "alarm" if alarm.active else "alarm_cleared"
            events.append(Event(alarm.time_s, kind, alarm.element,
                                f"{alarm.kind.value}: {alarm.message}"))
        n_alarms_seen = len(ctl.alarms)
    paths_log: dict[str, list[tuple[float, list[list[str]]]]] = {
        a.id: [] for a in scenario.applications}

    # Per-event work is proportional to what the event changed: the routes it moved and
    # the links it touched, so the whole run stays linear in links x time.
    app_index = {a.id: i for i, a in enumerate(scenario.applications)}
    route_cache: list[list[list[str]]] = []
    routable = np.ones(n_apps, dtype=bool)
    for i, app in enumerate(scenario.applications):
        src, dst = app_nodes[i]
        paths = [] if src == dst else ctl.routes[app.id].paths
        route_cache.append(paths)
        routable[i] = src == dst or bool(paths)
    incident: dict[str, list[int]] = {}
    for li, ln in enumerate(scenario.links):
        incident.setdefault(ln.a, []).append(li)
        incident.setdefault(ln.b, []).append(li)

    def refresh_routes(moved: set[str], t: float) -> tuple[np.ndarray, np.ndarray]:
        for route_id in moved:
            i = app_index.get(route_id)
            if i is None:
                continue
            paths = ctl.routes[route_id].paths
            route_cache[i] = paths
            routable[i] = bool(paths)
            log = paths_log[route_id]
            copy = [list(p) for p in paths]
            if not log or log[-1][1] != copy:
                log.append((t, copy))
        return net.incidence(route_cache)

    def refresh_links(link_ids: list[int]) -> None:
        for li in link_ids:
            ln = scenario.links[li]
            usable[li] = (ctl.links[ln.id].in_service and ctl.nodes[ln.a].up
                          and ctl.nodes[ln.b].up)
            produce[li] = blocks_per_step[li] if usable[li] else 0.0

    def note_changes(changes: list[RouteChange]) -> None:
        for ch in changes:
            old = " | ".join("-".join(p) for p in ch.old_paths) or "none"
            new = " | ".join("-".join(p) for p in ch.new_paths) or "none"
            events.append(Event(ch.time_s, "reroute", ch.route_id,
                                f"{old} -> {new} ({ch.reason})"))

    usable = np.ones(n_links, dtype=bool)
    produce = np.zeros(n_links, dtype=np.float64)
    refresh_links(list(range(n_links)))
    for app in scenario.applications:
        route = ctl.routes.get(app.id)
        paths_log[app.id].append((0.0, [list(p) for p in route.paths] if route else []))
    app_ptr, app_groups = net.incidence(route_cache)
    protect = resv.protect(app_ptr, app_groups)
    demand = _Demand(scenario.applications)
    det_cum = np.zeros(n_apps, dtype=np.float64)
    det_count = np.zeros(n_apps, dtype=np.int64)
    step = 0
    while step < n_steps:
        # Apply every event due now.
        moved: set[str] = set()
        touched: list[int] = []
        while queue and queue[0].step <= step:
            ev = heapq.heappop(queue)
            t = ev.step * dt
            changes: list[RouteChange] = []
            if ev.action == "link_down":
                changes = ctl.set_link_up(ev.element, False, t)
                events.append(Event(t, "failure", ev.element, "link down (fibre cut)"))
            elif ev.action == "link_up":
                changes = ctl.set_link_up(ev.element, True, t)
                events.append(Event(t, "repair", ev.element, "link repaired"))
            elif ev.action == "node_down":
                changes = ctl.set_node_up(ev.element, False, t)
                if world is not None:
                    world.set_node_up(ev.element, False)
                events.append(Event(t, "failure", ev.element, "node down"))
            elif ev.action == "node_up":
                changes = ctl.set_node_up(ev.element, True, t)
                if world is not None:
                    world.set_node_up(ev.element, True)
                events.append(Event(t, "repair", ev.element, "node repaired"))
            elif ev.action == "qber_high":
                changes = ctl.report_qber(ev.element, ev.value, t)
                events.append(Event(t, "qber", ev.element, f"QBER rises to {ev.value:.3f}"))
            elif ev.action == "qber_clear":
                changes = ctl.report_qber(ev.element, float(qbers[net.link_index[ev.element]]), t)
                events.append(Event(t, "repair", ev.element, "QBER back to normal"))
            elif ev.action == "telemetry":
                ctl.set_pool_levels((world.pool_bytes() if world else pool) * 8.0, t)
                if has_widest:
                    changes = ctl.reoptimise(t, "widest")
                report_reservations(t)
            note_changes(changes)
            moved.update(ch.route_id for ch in changes)
            if ev.action in ("link_down", "link_up", "qber_high", "qber_clear"):
                touched.append(net.link_index[ev.element])
            elif ev.action in ("node_down", "node_up"):
                touched.extend(incident.get(ev.element, []))
        if touched:
            refresh_links(touched)
        if moved:
            app_ptr, app_groups = refresh_routes(moved, step * dt)
            protect = resv.protect(app_ptr, app_groups)
        flush_alarms()
        next_step = min(queue[0].step if queue else n_steps, n_steps)
        next_step = min(next_step, step + _MAX_STEPS_PER_CALL)
        n = next_step - step
        if n <= 0:
            continue
        times = (step + np.arange(n)) * dt
        mean = demand.mean_keys(times) * dt
        requests = np.empty((n, n_apps), dtype=np.int64)
        if demand.poisson.any():
            requests[:, demand.poisson] = demand_rng.poisson(mean[:, demand.poisson])
        for i in np.flatnonzero(~demand.poisson).tolist():
            # Deterministic: a whole key each time the cumulative mean crosses one.
            cum = det_cum[i] + np.cumsum(mean[:, i])
            counts = np.floor(cum + 1e-9).astype(np.int64)
            requests[:, i] = np.diff(np.concatenate(([det_count[i]], counts)))
            det_cum[i], det_count[i] = cum[-1], counts[-1]
        bucket_of = (step + np.arange(n)) // steps_per_bucket
        starts = np.flatnonzero(np.diff(bucket_of, prepend=-1))
        requested[bucket_of[starts]] += np.add.reduceat(requests, starts, axis=0)
        reserved = resv.split(step, requests)
        if resv.active:
            res_requested[bucket_of[starts]] += np.add.reduceat(reserved, starts, axis=0)
        if world is not None:
            world.run(step, n, dt, steps_per_bucket, requests, reserved, protect, net.group_index,
                      usable, produce, carry, app_nodes, served, no_key, no_route, res_served,
                      pool_record)
        else:
            run_steps(step, n, steps_per_bucket, pool, carry, capacity, produce,
                      np.int64(block_bytes), usable, net.group_ptr, net.group_links, app_ptr,
                      app_groups, app_bytes, np.int64(MAC_KEY_BYTES),
                      np.int64(MAX_KEYS_PER_CALL), routable, class_ptr, class_apps, requests,
                      reserved, resv.apps, protect, served, no_key, no_route, res_served,
                      pool_record)
        in_service_record[bucket_of[0]: bucket_of[-1] + 1] = usable
        step = next_step
        if progress is not None:
            progress(step * dt)

    # The last interval's reservation telemetry, at the end of the run.
    report_reservations(n_steps * dt)
    flush_alarms()

    times_s = np.minimum((np.arange(n_buckets) + 1) * steps_per_bucket, n_steps) * dt
    return SimulationResult(
        scenario=scenario,
        duration_s=n_steps * dt,
        times_s=times_s,
        link_ids=[ln.id for ln in scenario.links],
        link_rate_bps=rates_bps,
        link_qber=qbers,
        pool_bits=pool_record * 8.0,
        link_in_service=in_service_record,
        app_ids=[a.id for a in scenario.applications],
        requested=requested,
        served=served,
        refused_no_key=no_key,
        refused_no_route=no_route,
        events=sorted(events, key=lambda e: e.time_s),
        paths=paths_log,
        alarms=list(ctl.alarms),
        wall_s=time.perf_counter() - wall0,
        reserved_requested=res_requested,
        reserved_served=res_served,
    )


def summary(result: SimulationResult) -> dict[str, Any]:
    """Totals per application (keys requested, served, refused) and counts of events."""
    out: dict[str, Any] = {"applications": {}, "reroutes": 0, "failures": 0}
    for i, app_id in enumerate(result.app_ids):
        out["applications"][app_id] = {
            "requested": int(result.requested[:, i].sum()),
            "served": int(result.served[:, i].sum()),
            "refused_no_key": int(result.refused_no_key[:, i].sum()),
            "refused_no_route": int(result.refused_no_route[:, i].sum()),
        }
    out["reroutes"] = sum(e.kind == "reroute" for e in result.events)
    out["failures"] = sum(e.kind == "failure" for e in result.events)
    return out
