# ruff: noqa: N815  -- field names are the standard's own, letter for letter
"""The KME service of one node: HTTP-free logic between the REST adapters and the KeyManager.

``etsi014`` and ``skip`` parse HTTP and call :class:`KmeService`; the service checks who
may do what (ETSI GS QKD 014 V1.1.1 §5: every request is authorised on its own; an SAE
reaches only keys of pairs it belongs to), applies the KME's limits, and calls
:class:`qkdnet.keys.KeyManager` off the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from qkdnet.api.certs import Identity, Role
from qkdnet.api.lanes import RelayLanes
from qkdnet.api.tls import peer_identity
from qkdnet.errors import ParameterError, RelayError, RoutingError, Unauthorized
from qkdnet.keys import KeyManager, RelayPolicy

__all__ = ["SKIP_SAE_PREFIX", "KmeLimits", "KmeService", "skip_sae_id"]

T = TypeVar("T")

# ETSI GS QKD 014 V1.1.1 §6.4–6.5: the messages of the standard's 400 examples, verbatim.
MSG_SIZE_MULTIPLE_OF_8 = "size shall be a multiple of 8"
MSG_EXTENSION_MANDATORY_UNSUPPORTED = "not all extension_mandatory parameters are supported"
MSG_EXTENSION_MANDATORY_UNMET = "not all extension_mandatory request options could be met"
MSG_KEYS_NOT_FOUND = "one or more keys specified are not found on KME"

#: Cisco SKIP's peers are key providers (nodes), not applications: each node registers one
#: internal SAE ``skip@<node>`` so that SKIP keys come from the same pools and relay.
SKIP_SAE_PREFIX = "skip@"
#: Attempts of a relay that fails with RelayError before the request gets its 503.
RELAY_ATTEMPTS = 4


def skip_sae_id(node_id: str) -> str:
    """The internal SAE ID under which node ``node_id`` serves Cisco SKIP keys."""
    return f"{SKIP_SAE_PREFIX}{node_id}"


@dataclass(frozen=True)
class KmeLimits:
    """The KME's advertised limits (ETSI GS QKD 014 §6.1 Status); sizes in bits."""

    key_size: int = 256
    min_key_size: int = 64
    max_key_size: int = 8192
    max_key_per_request: int = 128
    max_key_count: int = 100_000
    max_SAE_ID_count: int = 4

    def __post_init__(self) -> None:
        for name in ("key_size", "min_key_size", "max_key_size"):
            value = getattr(self, name)
            if value < 8 or value % 8:
                raise ParameterError(name, f"must be a positive multiple of 8 bits, got {value}")
        if not self.min_key_size <= self.key_size <= self.max_key_size:
            raise ParameterError("key_size", "must lie in [min_key_size, max_key_size]")
        if self.max_key_per_request < 1 or self.max_SAE_ID_count < 0:
            raise ParameterError("max_key_per_request", "must be >= 1 (and max_SAE_ID_count >= 0)")


@dataclass
class KmeService:
    """One node's KME: its KeyManager, where every SAE lives, and its limits.

    ``sae_nodes`` maps every SAE ID of the network to the ID of the node it is attached to.
    ``peer_nodes`` lists the other nodes (for SKIP ``/capabilities``). Relays run off the
    event loop, so one waiting on a neighbour never blocks the loop, each on the ordered
    lane of its first hop (:class:`qkdnet.api.lanes.RelayLanes`, shared with the node's Kx
    endpoint): relays over one link direction leave in the order they took link key, as
    the key store requires at the next node, while relays over different links run in
    parallel. A relay needing several first hops (k paths, multicast) runs on one of
    ``workers`` threads holding all their lanes.
    """

    node_id: str
    key_manager: KeyManager
    sae_nodes: Mapping[str, str]
    peer_nodes: Sequence[str] = ()
    limits: KmeLimits = field(default_factory=KmeLimits)
    workers: int = 8
    #: The node's relay lanes (one is made when not given; share it with the KxEndpoint).
    lanes: RelayLanes | None = None
    #: Mandatory extensions understood: name → function(value, policy kwargs) that records it.
    extensions: dict[str, Callable[[Any, dict[str, Any]], None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=f"kme-{self.node_id}")
        if self.lanes is None:
            self.lanes = RelayLanes(self.node_id)
        if not self.extensions:
            self.extensions = {
                "qkdnet_paths": _extension_paths,
                "qkdnet_avoid_nodes": _extension_avoid,
            }

    def close(self) -> None:
        """Stop the worker threads (after the server stopped taking requests)."""
        self._executor.shutdown(wait=True)
        if self.lanes is not None:
            self.lanes.close()

    def first_hops(self, destinations: Sequence[str], policy: RelayPolicy | None) -> set[str]:
        """The neighbours a relay to ``destinations`` (node IDs) under ``policy`` takes
        link key towards: the first hop of each path ``KeyManager.paths_to`` chooses (the
        same router, so the same paths ``supply`` will use). Empty when there is no route
        (``supply`` then raises RoutingError before it takes any key)."""
        hops: set[str] = set()
        for dest in destinations:
            if dest == self.node_id:
                continue
            try:
                paths = self.key_manager.paths_to(dest, policy or RelayPolicy())
            except RoutingError:
                continue
            hops.update(path[1] for path in paths)
        return hops

    async def _run(
        self, fn: Callable[..., T], *args: Any, lanes: frozenset[str] = frozenset(), **kwargs: Any
    ) -> T:
        """Run ``fn`` off the event loop holding the relay ``lanes`` (neighbour IDs): on
        that lane's own thread when there is one lane, else on a shared worker."""
        loop = asyncio.get_running_loop()
        relay_lanes = self.lanes
        if not lanes or relay_lanes is None:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

        def call() -> T:
            assert relay_lanes is not None
            with relay_lanes.hold(lanes):
                return fn(*args, **kwargs)

        executor = relay_lanes.executor(next(iter(lanes))) if len(lanes) == 1 else self._executor
        return await loop.run_in_executor(executor, call)

    async def _relay(
        self, fn: Callable[..., T], *args: Any, lanes: frozenset[str] = frozenset(), **kwargs: Any
    ) -> T:
        """Run a KeyManager call that relays over first hops ``lanes`` on their ordered
        lanes, retrying a failed relay after a random pause.

        The two directions of a link take link key from opposite ends of each block
        (docs/key-management.md), so opposite-direction relays no longer collide; they still
        can where the two marks meet inside a block (a pool near exhaustion, or very unequal
        traffic). Both relays are then refused (nothing delivered, nothing half-done:
        RelayError), and a retry at a random later moment usually goes through.
        """
        for attempt in range(RELAY_ATTEMPTS):
            try:
                return await self._run(fn, *args, lanes=lanes, **kwargs)
            except RelayError:
                if attempt == RELAY_ATTEMPTS - 1:
                    raise
                # Random, growing pauses (ms) so the two ends stop colliding.
                await asyncio.sleep((5 + secrets.randbelow(20 * (attempt + 1))) / 1000)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_local(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a KeyManager call that touches only this node's store on the event loop.

        A thread hop would cost more than the call: under load the loop thread holds the GIL
        and the worker waits a whole switch interval (5 ms) to get it back after each
        SQLite call. Calls that may wait on a neighbour (relays) go through :meth:`_run`.
        None of these touches link key, so they cannot reorder a relay's key ranges.
        """
        return fn(*args, **kwargs)

    # -- who is calling -------------------------------------------------------------------
    def authenticate_sae(self, scope: Mapping[str, Any]) -> str:
        """The ID of the SAE of this node that made the request; Unauthorized otherwise."""
        identity: Identity | None = peer_identity(scope)
        if identity is None:
            raise Unauthorized("no client certificate: mutual TLS is required")
        if identity.role is not Role.SAE:
            raise Unauthorized("only SAE certificates may request keys")
        if self.sae_nodes.get(identity.id) != self.node_id:
            raise Unauthorized(f"SAE {identity.id!r} is not attached to KME {self.node_id!r}")
        return identity.id

    def _node_of(self, sae_id: str, field_name: str) -> str:
        node = self.sae_nodes.get(sae_id)
        if node is None or sae_id.startswith(SKIP_SAE_PREFIX):
            raise ParameterError(field_name, f"unknown SAE {sae_id!r}")
        return node

    # -- extensions -----------------------------------------------------------------------
    def parse_mandatory_extensions(self, mandatory: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Policy options from ``extension_mandatory``; an unknown name → the standard's 400."""

        options: dict[str, Any] = {}
        for item in mandatory:
            for name, value in item.items():
                handler = self.extensions.get(name)
                if handler is None:
                    raise ParameterError("extension_mandatory", MSG_EXTENSION_MANDATORY_UNSUPPORTED)
                try:
                    handler(value, options)
                except (ValueError, TypeError) as exc:
                    raise ParameterError(
                        "extension_mandatory", MSG_EXTENSION_MANDATORY_UNMET
                    ) from exc
        return options

    # -- ETSI GS QKD 014 ------------------------------------------------------------------
    async def status(self, master: str, slave: str) -> dict[str, Any]:
        """§6.1 Status for the pair (master, slave) as a dict."""
        slave_node = self._node_of(slave, "slave_SAE_ID")
        pair = await self._run_local(self.key_manager.status, master, slave, slave_node)
        lim = self.limits
        count = min(int(pair.stored_key_count), lim.max_key_count)
        return {
            "source_KME_ID": self.node_id,
            "target_KME_ID": slave_node,
            "master_SAE_ID": master,
            "slave_SAE_ID": slave,
            "key_size": lim.key_size,
            "stored_key_count": int(count),
            "max_key_count": lim.max_key_count,
            "max_key_per_request": lim.max_key_per_request,
            "max_key_size": lim.max_key_size,
            "min_key_size": lim.min_key_size,
            "max_SAE_ID_count": lim.max_SAE_ID_count,
        }

    async def enc_keys(
        self, master: str, slave: str, number: int | None, size: int | None,
        additional: Sequence[str] = (), options: Mapping[str, Any] | None = None,
    ) -> list[tuple[uuid.UUID, bytes]]:
        """§5.2: ``number`` new keys of ``size`` bits for master → slave (+ additional slaves)."""
        lim = self.limits
        number = 1 if number is None else number
        size = lim.key_size if size is None else size
        if size % 8:

            raise ParameterError("size", MSG_SIZE_MULTIPLE_OF_8)
        if not lim.min_key_size <= size <= lim.max_key_size:
            raise ParameterError(
                "size", f"must be between {lim.min_key_size} and {lim.max_key_size} bits"
            )
        if not 1 <= number <= lim.max_key_per_request:
            raise ParameterError("number", f"must be between 1 and {lim.max_key_per_request}")
        if len(additional) > lim.max_SAE_ID_count:
            raise ParameterError(
                "additional_slave_SAE_IDs",
                f"at most {lim.max_SAE_ID_count} additional slave SAEs (max_SAE_ID_count)",
            )
        slave_node = self._node_of(slave, "slave_SAE_ID")
        extra: list[tuple[str, str]] = []
        for sae in additional:
            if sae in (slave, master) or any(sae == s for s, _ in extra):
                raise ParameterError("additional_slave_SAE_IDs", f"SAE {sae!r} listed twice")
            extra.append((sae, self._node_of(sae, "additional_slave_SAE_IDs")))
        if slave == master:
            raise ParameterError("slave_SAE_ID", "an SAE cannot share keys with itself")
        policy = _make_policy(options or {})
        local = slave_node == self.node_id and all(n == self.node_id for _, n in extra)
        try:
            if local:
                delivered = await self._run_local(
                    self.key_manager.supply, master, slave, slave_node, number, size,
                    additional_slaves=tuple(extra), policy=policy,
                )
            else:
                hops = self.first_hops([slave_node, *(n for _, n in extra)], policy)
                delivered = await self._relay(
                    self.key_manager.supply, master, slave, slave_node, number, size,
                    additional_slaves=tuple(extra), policy=policy, lanes=frozenset(hops),
                )
        except RoutingError as exc:
            if policy is not None:  # the relay options asked for cannot be met
                raise ParameterError("extension_mandatory", MSG_EXTENSION_MANDATORY_UNMET) from exc
            raise
        return [(d.key_id, d.key) for d in delivered]

    async def dec_keys(
        self, slave: str, master: str, key_ids: Sequence[uuid.UUID]
    ) -> list[tuple[uuid.UUID, bytes]]:
        """§5.3: the keys ``key_ids`` made by ``master`` for ``slave`` (the caller)."""
        if len(key_ids) > self.limits.max_key_per_request:
            raise ParameterError(
                "key_IDs", f"at most {self.limits.max_key_per_request} key IDs per request"
            )
        if len(set(key_ids)) != len(key_ids):
            raise ParameterError("key_IDs", "a key ID is listed twice")
        self._node_of(master, "master_SAE_ID")
        delivered = await self._run_local(
            self.key_manager.retrieve, slave, master, list(key_ids)
        )
        return [(d.key_id, d.key) for d in delivered]

    # -- Cisco SKIP -----------------------------------------------------------------------
    def authenticate_skip(self, scope: Mapping[str, Any]) -> str:
        """Any SAE of this node may act as a SKIP client (a router or encryptor)."""
        return self.authenticate_sae(scope)

    async def skip_new_key(self, remote_node: str, size_bits: int) -> tuple[uuid.UUID, bytes]:
        """A new key shared with key provider ``remote_node`` (draft-cisco-skip-02 §4.2)."""
        if remote_node == self.node_id or remote_node not in self.peer_nodes:
            raise ParameterError("remoteSystemID", f"unknown remote system {remote_node!r}")
        delivered = await self._relay(
            self.key_manager.supply, skip_sae_id(self.node_id), skip_sae_id(remote_node),
            remote_node, 1, size_bits, lanes=frozenset(self.first_hops([remote_node], None)),
        )
        return delivered[0].key_id, delivered[0].key

    async def skip_key_by_id(self, remote_node: str, key_id: uuid.UUID) -> bytes:
        """The key ``key_id`` that ``remote_node`` made for this node (draft-cisco-skip-02 §4.3)."""
        if remote_node == self.node_id or remote_node not in self.peer_nodes:
            raise ParameterError("remoteSystemID", f"unknown remote system {remote_node!r}")
        delivered = await self._run_local(
            self.key_manager.retrieve, skip_sae_id(self.node_id), skip_sae_id(remote_node),
            [key_id],
        )
        return delivered[0].key


def _extension_paths(value: Any, options: dict[str, Any]) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise ValueError("qkdnet_paths must be an integer 1..4")
    options["paths"] = value


def _extension_avoid(value: Any, options: dict[str, Any]) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("qkdnet_avoid_nodes must be a list of node IDs")
    options["avoid"] = frozenset(value)


def _make_policy(options: Mapping[str, Any]) -> Any:
    """A :class:`qkdnet.keys.RelayPolicy` from extension options (None = the default)."""
    if not options:
        return None
    kwargs = {{"paths": "paths", "avoid": "avoid_nodes"}[name]: v for name, v in options.items()}
    return RelayPolicy(**kwargs)
