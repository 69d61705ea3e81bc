"""The exact engine: one real :class:`qkdnet.keys.KeyManager` per node.

Every node gets a KeyManager with its own SQLite key store (in memory), all joined by an
``InProcessTransport`` and driven by one ``SimulatedClock``; the controller's router
decides relay paths. Each time step, every link in service deposits its whole new blocks
of key at both ends (Kq-1, identical IDs and bits), and each application's requests of the
step go through ``KeyManager.supply`` at the master's node (as many keys as the path's
link keys can pay for, at most ``max_key_per_request`` per call); the slave SAE then
fetches them with ``retrieve`` and the two copies are compared. This is the code
``qkdnet serve`` runs, so it checks the vector engine (a test compares them) but costs
milliseconds per key: use it for small networks and short times.

It stores real key bytes: memory grows with the key in the pools (up to each link's
``pool_capacity_bits``), so keep link rates, capacities and durations small.

Known differences from the vector engine: a KeyManager relays over one link per
neighbour (``KeyManager.link_to``), so parallel links are not pooled; within a step
applications are served one after another in priority order instead of in proportion.
Reservations follow the same rules as there: each step the reserved parts of the
requests (split by the shared token buckets) are supplied first, then every
application's remaining request by priority, never drawing a hop below the key held
back for the reservations.
"""

from __future__ import annotations

import uuid

import numpy as np

from qkdnet.control import Controller
from qkdnet.errors import KeyExhausted, QkdnetError, RelayError, RoutingError
from qkdnet.keys import (
    MAC_KEY_BYTES,
    InProcessTransport,
    KeyManager,
    RelayPolicy,
    SimulatedClock,
    SQLiteKeyStore,
)
from qkdnet.scenario import Scenario


class KeyManagerWorld:
    """All nodes' key managers for one simulation run."""

    def __init__(self, scenario: Scenario, ctl: Controller, rng: np.random.Generator,
                 block_bytes: int, per_call: int, classes: list[int] | None = None,
                 reserved_apps: list[int] | None = None) -> None:
        self.scenario = scenario
        self.ctl = ctl
        self.rng = rng
        self.block_bytes = block_bytes
        self.per_call = per_call
        self.clock = SimulatedClock(0.0)
        self.transport = InProcessTransport()
        self.kms: dict[str, KeyManager] = {}
        for node in scenario.nodes:
            km = KeyManager(node.id, SQLiteKeyStore(":memory:", synchronous="OFF"),
                            self.transport, self.clock, router=ctl.router,
                            max_key_per_request=per_call, probe=True)
            self.kms[node.id] = km
            self.transport.attach(node.id, km.handle_message)
        for link in scenario.links:
            self.kms[link.a].add_link(link.id, link.b)
            self.kms[link.b].add_link(link.id, link.a)
        for sae in scenario.saes:
            self.kms[sae.node].register_sae(sae.id)
        for link in scenario.links:  # the pool at time 0, as one block
            initial = int(link.initial_pool_bits // 8)
            if initial > 0:
                bits = self.rng.bytes(initial)
                kid = uuid.UUID(bytes=self.rng.bytes(16), version=4)
                self.kms[link.a].deposit_link_key(link.id, bits, kid)
                self.kms[link.b].deposit_link_key(link.id, bits, kid)
        self.keys_checked = 0
        self.capacity = [int(ln.pool_capacity_bits // 8) for ln in scenario.links]
        self.classes = classes or [a.priority for a in scenario.applications]
        #: Applications holding a reservation, in the order their reserved parts are served.
        self.reserved_apps = reserved_apps or []

    def set_node_up(self, node_id: str, up: bool) -> None:
        """A node down is unreachable over Kx."""
        if up:
            self.transport.attach(node_id, self.kms[node_id].handle_message)
        else:
            self.transport.detach(node_id)

    def pool_bytes(self) -> np.ndarray:
        """Unused link-key bytes of every link (at its ``a`` end)."""
        return np.array([self.kms[ln.a].link_key_bytes(ln.id) for ln in self.scenario.links],
                        dtype=np.int64)

    def _affordable(self, paths: list[list[str]], size: int, want: int,
                    hold: dict[frozenset[str], int] | None = None) -> int:
        """Keys (<= want, one call) every hop's link key can pay for, MAC included,
        leaving ``hold[pair]`` bytes on each hop (key protected for reservations)."""
        avail = None
        for path in paths:
            for u, v in zip(path, path[1:], strict=False):
                km = self.kms[u]
                b = km.link_key_bytes(km.link_to(v))
                if hold:
                    b -= hold.get(frozenset((u, v)), 0)
                avail = b if avail is None else min(avail, b)
        if avail is None:
            return want
        return int(max(0, min(want, (avail - MAC_KEY_BYTES) // size)))

    def _serve(self, a: int, want: int, src: str, dst: str, paths: list[list[str]],
               hold: dict[frozenset[str], int] | None) -> int:
        """Supply up to ``want`` keys to application ``a`` with real KeyManager calls;
        the slave fetches them and both copies are compared. Returns the keys served."""
        app = self.scenario.applications[a]
        size = -(-app.key_size_bits // 8)
        allowed = frozenset(app.via_nodes) or None
        if self.ctl.reservation_for(self.ctl.routes[app.id]) is not None:
            # The route follows its reservation's path: the relay goes only through it.
            allowed = frozenset(paths[0])
        policy = RelayPolicy(paths=app.paths, avoid_nodes=frozenset(app.avoid_nodes),
                             allowed_nodes=allowed)
        got = 0
        while want - got > 0:
            n = self._affordable(paths, size, min(want - got, self.per_call), hold)
            if n == 0:
                break
            try:
                keys = self.kms[src].supply(app.master, app.slave, dst, number=n,
                                            size_bits=app.key_size_bits, policy=policy)
            except (KeyExhausted, RelayError, RoutingError):
                break
            back = self.kms[dst].retrieve(app.slave, app.master, [k.key_id for k in keys])
            if [k.key for k in back] != [k.key for k in keys]:
                raise QkdnetError(f"{app.id}: master and slave keys differ")
            self.keys_checked += len(keys)
            got += n
        return got

    def run(self, step0: int, n_steps: int, dt: float, steps_per_bucket: int,
            requests: np.ndarray, reserved: np.ndarray, protect: np.ndarray,
            group_index: dict[frozenset[str], int], usable: np.ndarray, produce: np.ndarray,
            carry: np.ndarray, app_nodes: list[tuple[str, str]], served: np.ndarray,
            no_key: np.ndarray, no_route: np.ndarray, res_served: np.ndarray,
            pool_record: np.ndarray) -> None:
        """Advance ``n_steps`` steps with real key managers, filling the count arrays.

        Each step: the reserved parts (``reserved``, shape (n, A), or (0, 0) for none)
        first, then every application's remaining request by priority (best effort),
        which may not draw a hop below ``protect`` bytes (per KM link, by
        ``group_index``), as in the vector engine."""
        apps = self.scenario.applications
        order = sorted(range(len(apps)), key=lambda i: -self.classes[i])
        has_res = reserved.shape[0] > 0
        hold = ({pair: int(protect[g]) for pair, g in group_index.items() if protect[g]}
                if has_res else None)
        for i in range(n_steps):
            step = step0 + i
            bucket = step // steps_per_bucket
            self.clock.set(step * dt)
            for li, link in enumerate(self.scenario.links):
                if not usable[li]:
                    continue
                carry[li] += produce[li]
                whole = int(carry[li])
                carry[li] -= whole
                if whole == 0:
                    continue
                # This step's whole blocks go in as one key block (the store hands out
                # byte ranges, so the accounting is the same), up to the pool's capacity.
                room = self.capacity[li] - self.kms[link.a].link_key_bytes(link.id)
                size = min(whole * self.block_bytes, max(0, room))
                if size > 0:
                    bits = self.rng.bytes(size)
                    kid = uuid.UUID(bytes=self.rng.bytes(16), version=4)
                    self.kms[link.a].deposit_link_key(link.id, bits, kid)
                    self.kms[link.b].deposit_link_key(link.id, bits, kid)
            passes = ([(a, True) for a in self.reserved_apps] if has_res else []) + [
                (a, False) for a in order]
            for a, is_reserved in passes:
                if is_reserved:
                    want = int(reserved[i, a])
                else:
                    want = int(requests[i, a]) - (int(reserved[i, a]) if has_res else 0)
                if want == 0:
                    continue
                src, dst = app_nodes[a]
                if src == dst:
                    served[bucket, a] += want
                    if is_reserved:
                        res_served[bucket, a] += want
                    continue
                route = self.ctl.routes[apps[a].id]
                if not route.paths:
                    no_route[bucket, a] += want
                    continue
                got = self._serve(a, want, src, dst, route.paths,
                                  None if is_reserved else hold)
                served[bucket, a] += got
                no_key[bucket, a] += want - got
                if is_reserved:
                    res_served[bucket, a] += got
            if (step + 1) % steps_per_bucket == 0 or i == n_steps - 1:
                pool_record[bucket] = self.pool_bytes()
