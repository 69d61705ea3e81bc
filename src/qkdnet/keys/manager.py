"""The key manager of one node: link keys in (Kq-1), relay between managers (Kx), supply to
applications (Ak). After ITU-T Y.3803 (key relay over trusted nodes) and X.1714 (key
combination over several paths); the Ak side follows ETSI GS QKD 014 (enc_keys/dec_keys).

Pools in the node's store:

* ``link:<link_id>`` — keys of a QKD link, the same IDs and bits at both ends;
* ``enc:<master>:<slave>`` — keys relayed ahead of demand, at the master's node;
* ``dec:<master>:<slave>`` — keys waiting at the slave's node for ``dec_keys``;
* ``stage:<relay_id>`` — shares of a multi-path relay waiting at the destination.

Relay of ``number`` keys of ``size`` bytes along a path ``n0 → n1 → … → nh`` (h hops):
every hop takes ``MAC_KEY_BYTES + number*size`` bytes of that hop's link key, the same
bytes at both ends (named in the message by :class:`KeyRange`): 16 bytes of hash key and
two 16-byte pads (request tag, completion tag), then the pad. On the first hop the pad
*is* the end key (so the end key is QKD key); on later hops the node sends the key
one-time padded. The destination stores the key, then answers with an authenticated
relay-completion message that travels back hop by hop to the origin. Total link key
spent: ``h * (MAC_KEY_BYTES + number*size)`` bytes, counted at both ends of each link.

Each hop's sender spends its own share of the link key (:func:`link_direction`): the node
with the smaller ID takes link-key blocks from their start, the other from their end,
each preferring its own half of the blocks, so relays that the two ends of a link
originate at the same moment name different bytes and both go through. Per direction,
messages must still arrive in the order their key was taken.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qkdnet.errors import (
    AuthenticationError,
    KeyExhausted,
    KeyManagementError,
    KeyNotFound,
    ParameterError,
    QkdnetError,
    RelayError,
    RoutingError,
    Unauthorized,
)
from qkdnet.keys.clock import Clock
from qkdnet.keys.mac import MAC_HASH_KEY_BYTES, MAC_PAD_BYTES, mac_tag, mac_verify
from qkdnet.keys.store import BACK, FRONT, KeyBlock, KeyRange, KeyStore, bits_to_bytes
from qkdnet.keys.transport import KxMessage, MessageKind, Transport, b64, unb64

#: Link-key bytes one relay message spends on authentication: hash key + request pad +
#: completion pad (Wegman–Carter, see :mod:`qkdnet.keys.mac`).
MAC_KEY_BYTES = MAC_HASH_KEY_BYTES + 2 * MAC_PAD_BYTES


@dataclass(frozen=True)
class RelayPolicy:
    """How a request may be relayed (chosen per request; the router reads it too).

    ``paths``: k >= 1 node-disjoint paths; the end key is the XOR of the keys relayed over
    them (X.1714 key combination), so one compromised trusted node learns nothing.
    ``avoid_nodes``: trusted nodes the key must not pass. ``allowed_nodes``: if given, the
    only intermediate nodes allowed.
    """

    paths: int = 1
    avoid_nodes: frozenset[str] = frozenset()
    allowed_nodes: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.paths, int) or self.paths < 1:
            raise ParameterError("paths", f"must be an integer >= 1, got {self.paths!r}")


@dataclass(frozen=True)
class DeliveredKey:
    """A key handed to an application: its ID and its bytes (ETSI 014 key container entry)."""

    key_id: uuid.UUID
    key: bytes

    def __repr__(self) -> str:  # never print the key
        return f"DeliveredKey(key_id={self.key_id}, size_bits={8 * len(self.key)})"


@dataclass(frozen=True)
class PairStatus:
    """ETSI GS QKD 014 Status of an SAE pair, as seen from the master's node (sizes in bits)."""

    source_kme_id: str
    target_kme_id: str
    master_sae_id: str
    slave_sae_id: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_sae_id_count: int


@dataclass
class RelayStats:
    """Counters of one manager (bytes of link key spent as sender, keys delivered)."""

    link_bytes_sent: dict[str, int] = field(default_factory=dict)
    link_bytes_received: dict[str, int] = field(default_factory=dict)
    keys_supplied: int = 0
    keys_retrieved: int = 0
    relays_completed: int = 0
    relays_failed: int = 0


Router = Callable[[str, str, RelayPolicy], list[list[str]]]


def _xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ParameterError("key", "XOR of keys of different lengths")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def key_ids_from_seed(seed: uuid.UUID, number: int) -> list[uuid.UUID]:
    """The IDs of a batch of ``number`` keys: name-based UUIDs (RFC 4122 v5) of ``seed``.

    A relay message carries the 16-byte seed instead of every ID (IDs are not secret);
    both ends derive the same IDs.
    """
    return [uuid.uuid5(seed, str(i)) for i in range(number)]


def link_direction(sender: str, receiver: str) -> str:
    """Which share of a link's key the node ``sender`` spends on its messages to
    ``receiver``: the end with the smaller node ID takes every link-key block from its start
    (``FRONT``), the other from its end (``BACK``). Both ends compute the same answer, so
    relays originated at the two ends at the same moment never name the same bytes.
    """
    if sender == receiver:
        raise ParameterError("link", f"a link joins two nodes, got {sender!r} twice")
    return FRONT if sender < receiver else BACK


def link_pool(link_id: str) -> str:
    """Pool name of a QKD link's keys."""
    return f"link:{link_id}"


def enc_pool(master_sae_id: str, slave_sae_id: str) -> str:
    """Pool, at the master's node, of keys relayed ahead of demand for the pair."""
    return f"enc:{master_sae_id}:{slave_sae_id}"


def dec_pool(master_sae_id: str, slave_sae_id: str) -> str:
    """Pool, at the slave's node, of the pair's keys waiting for ``dec_keys``."""
    return f"dec:{master_sae_id}:{slave_sae_id}"


class KeyManager:
    """The key manager (KM) of one node (Y.3803): stores, SAEs, relay and supply.

    The same code runs in simulation (InProcessTransport, SimulatedClock) and live (an
    HTTPS transport, SystemClock). ``router(origin, destination, policy)`` returns candidate
    paths (lists of node IDs, origin first), e.g. from the control layer; without one,
    only direct neighbours are reachable.
    """

    def __init__(
        self,
        node_id: str,
        store: KeyStore,
        transport: Transport,
        clock: Clock,
        router: Router | None = None,
        *,
        key_size_bits: int = 256,
        min_key_size_bits: int = 64,
        max_key_size_bits: int = 8192,
        max_key_per_request: int = 128,
        max_key_count: int = 100_000,
        max_sae_id_count: int = 8,
        reservation_ttl_s: float = 30.0,
        probe: bool = True,
    ) -> None:
        if not node_id or ":" in node_id:
            raise ParameterError("node_id", f"must be non-empty, without ':', got {node_id!r}")
        self.node_id = node_id
        self.store = store
        self.transport = transport
        self.clock = clock
        self.router = router
        self.key_size_bits = key_size_bits
        self.min_key_size_bits = min_key_size_bits
        self.max_key_size_bits = max_key_size_bits
        self.max_key_per_request = max_key_per_request
        self.max_key_count = max_key_count
        self.max_sae_id_count = max_sae_id_count
        self.reservation_ttl_s = reservation_ttl_s
        self.probe = probe
        self.links: dict[str, str] = {}  # link_id -> peer node
        self.saes: set[str] = set()
        self.stats = RelayStats()
        self._lock = threading.Lock()
        self.devices: dict[str, Any] = {}  # link_id -> Etsi014DeviceSource

    # -- configuration --------------------------------------------------------------------
    def add_link(self, link_id: str, peer_node_id: str) -> None:
        """Declare QKD link ``link_id`` between this node and ``peer_node_id``."""
        if not link_id or peer_node_id == self.node_id:
            raise ParameterError("link_id", "need a link name and a peer other than this node")
        self.links[link_id] = peer_node_id

    def register_sae(self, sae_id: str) -> None:
        """Attach application (SAE) ``sae_id`` to this node."""
        if not sae_id or ":" in sae_id:
            raise ParameterError("sae_id", f"must be non-empty, without ':', got {sae_id!r}")
        self.saes.add(sae_id)

    def link_to(self, peer_node_id: str) -> str:
        """The link ID towards neighbour ``peer_node_id`` (RoutingError if none)."""
        for link_id, peer in sorted(self.links.items()):
            if peer == peer_node_id:
                return link_id
        raise RoutingError(f"node {self.node_id!r} has no link to {peer_node_id!r}")

    # -- Kq-1: keys from the QKD link ------------------------------------------------------
    def deposit_link_key(
        self, link_id: str, bits: bytes, key_id: uuid.UUID | None = None, *, epsilon: float = 1e-10
    ) -> uuid.UUID:
        """Store a QKD link key (Kq-1); returns its ID. Durable when this returns.

        Both ends of the link must deposit the same ``key_id`` with the same ``bits``
        (the QKD link's post-processing produces them in step).
        """
        if link_id not in self.links:
            raise ParameterError("link_id", f"unknown link {link_id!r} at node {self.node_id!r}")
        block = KeyBlock(key_id or uuid.uuid4(), bytes(bits), link_id, self.clock.now(), epsilon)
        self.store.put(link_pool(link_id), [block])
        return block.key_id

    def deposit_link_keys(self, link_id: str, blocks: Sequence[KeyBlock]) -> int:
        """Store several link keys atomically (post-processing output); returns how many are new."""
        if link_id not in self.links:
            raise ParameterError("link_id", f"unknown link {link_id!r} at node {self.node_id!r}")
        return self.store.put(link_pool(link_id), list(blocks))

    def link_key_bytes(self, link_id: str) -> int:
        """Unused link-key bytes of ``link_id`` at this end."""
        return self.store.available_bytes(link_pool(link_id))

    # -- Kq-1 from a QKD device's ETSI 014 API ----------------------------------------------
    def attach_device(self, link_id: str, source: Any) -> None:
        """Take ``link_id``'s keys from a QKD device: ``source`` is this end's
        :class:`qkdnet.keys.device.Etsi014DeviceSource` (anything with ``enc_keys`` and
        ``dec_keys``)."""
        if link_id not in self.links:
            raise ParameterError("link_id", f"unknown link {link_id!r} at node {self.node_id!r}")
        self.devices[link_id] = source

    def pull_device_keys(self, link_id: str, number: int, size_bits: int) -> list[uuid.UUID]:
        """One Kq-1 round on a device link, from this (master) end: ``enc_keys`` from the
        device, a KEY_SYNC message with the key IDs to the key manager at the other end,
        which fetches the same keys with ``dec_keys`` and stores them; then this end stores
        them. Returns the IDs, stored at both ends when this returns.

        The KEY_SYNC message carries IDs only (no secret); its integrity rests on the
        transport (mutual TLS between live nodes), not on link key. If the peer fails, this
        end stores nothing (the device's keys are lost, the link stays in step).
        """
        source = self.devices.get(link_id)
        if source is None:
            raise ParameterError("link_id", f"no QKD device attached to link {link_id!r}")
        blocks = source.enc_keys(number, size_bits)
        msg = KxMessage(
            MessageKind.KEY_SYNC, self.node_id, self.links[link_id], link_id,
            {"key_ids": [str(b.key_id) for b in blocks]},
        )
        try:
            resp = self.transport.send(msg)
        except QkdnetError as exc:
            raise RelayError(f"key sync on link {link_id!r} failed: {exc}") from exc
        if resp.kind is not MessageKind.KEY_SYNC_DONE or resp.body.get("stored") != len(blocks):
            raise RelayError(f"key sync on link {link_id!r}: the peer did not store the keys")
        self.store.put(link_pool(link_id), blocks)
        return [b.key_id for b in blocks]

    def _handle_key_sync(self, message: KxMessage) -> KxMessage:
        source = self.devices.get(message.link_id)
        if source is None:
            raise RelayError(f"no QKD device attached to link {message.link_id!r}")
        try:
            ids = [uuid.UUID(str(k)) for k in message.body["key_ids"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"malformed key sync message: {exc}") from exc
        blocks = source.dec_keys(ids)
        if [b.key_id for b in blocks] != ids:
            raise RelayError("the device answered dec_keys with other key IDs")
        self.store.put(link_pool(message.link_id), blocks)
        return KxMessage(
            MessageKind.KEY_SYNC_DONE, self.node_id, message.source_node, message.link_id,
            {"stored": len(blocks)},
        )

    # -- paths -----------------------------------------------------------------------------
    def paths_to(self, destination: str, policy: RelayPolicy) -> list[list[str]]:
        """``policy.paths`` node-disjoint paths to ``destination`` (RoutingError if too few)."""
        if self.router is not None:
            candidates = self.router(self.node_id, destination, policy)
        elif destination in self.links.values():
            candidates = [[self.node_id, destination]]
        else:
            raise RoutingError(
                f"node {destination!r} is not a neighbour of {self.node_id!r} and no router is set"
            )
        chosen: list[list[str]] = []
        used: set[str] = set()
        for path in candidates:
            path = list(path)
            if len(path) < 2 or path[0] != self.node_id or path[-1] != destination:
                continue
            inner = path[1:-1]
            if len(set(path)) != len(path):
                continue
            if any(n in policy.avoid_nodes for n in inner):
                continue
            if policy.allowed_nodes is not None and any(
                n not in policy.allowed_nodes for n in inner
            ):
                continue
            if used & set(inner) or (len(inner) == 0 and any(len(p) == 2 for p in chosen)):
                continue
            chosen.append(path)
            used |= set(inner)
            if len(chosen) == policy.paths:
                return chosen
        raise RoutingError(
            f"{len(chosen)} allowed node-disjoint path(s) from {self.node_id!r} to "
            f"{destination!r}, the policy needs {policy.paths}"
        )

    # -- Ak: supply to applications ------------------------------------------------------------
    def _check_request(self, number: int, size_bits: int) -> int:
        if not isinstance(number, int) or not (1 <= number <= self.max_key_per_request):
            raise ParameterError(
                "number",
                f"must be 1..{self.max_key_per_request} (max_key_per_request), got {number!r}",
            )
        size = bits_to_bytes(size_bits)
        if not (self.min_key_size_bits <= size_bits <= self.max_key_size_bits):
            raise ParameterError(
                "size",
                f"must be {self.min_key_size_bits}..{self.max_key_size_bits} bits, got {size_bits}",
            )
        return size

    def supply(
        self,
        master_sae_id: str,
        slave_sae_id: str,
        slave_node_id: str,
        number: int = 1,
        size_bits: int | None = None,
        additional_slaves: Sequence[tuple[str, str]] = (),
        policy: RelayPolicy | None = None,
    ) -> list[DeliveredKey]:
        """Keys for master SAE ``master_sae_id`` shared with ``slave_sae_id`` at ``slave_node_id``
        (ETSI GS QKD 014 ``enc_keys``); ``size_bits`` defaults to ``key_size_bits``.

        Uses keys relayed ahead of demand (pool ``enc:``) when enough of the right size
        are there, otherwise relays now (direct link, or trusted nodes per ``policy``). The
        same keys also go to each ``(sae_id, node_id)`` in ``additional_slaves`` (multicast).
        The keys are stored at every slave's node before this returns.

        Raises Unauthorized (master not at this node), ParameterError (bad number/size),
        KeyExhausted (too little link key; nothing taken when the shortage is seen before
        the relay starts), RoutingError, RelayError.
        """
        if master_sae_id not in self.saes:
            raise Unauthorized(f"SAE {master_sae_id!r} is not attached to node {self.node_id!r}")
        size_bits = self.key_size_bits if size_bits is None else size_bits
        size = self._check_request(number, size_bits)
        if len(additional_slaves) > self.max_sae_id_count:
            raise ParameterError(
                "additional_slave_SAE_IDs", f"at most {self.max_sae_id_count} (max_SAE_ID_count)"
            )
        policy = policy or RelayPolicy()
        if not additional_slaves:
            ready = self._from_prefilled(master_sae_id, slave_sae_id, number, size)
            if ready is not None:
                return ready
        seed = uuid.uuid4()
        key_ids = key_ids_from_seed(seed, number)
        keys = self._make_keys(
            master_sae_id, slave_sae_id, slave_node_id, seed, number, size, policy, None
        )
        for extra_sae, extra_node in additional_slaves:
            self._make_keys(master_sae_id, extra_sae, extra_node, seed, number, size, policy, keys)
        self.stats.keys_supplied += number
        return [
            DeliveredKey(kid, keys[i * size : (i + 1) * size]) for i, kid in enumerate(key_ids)
        ]

    def _from_prefilled(
        self, master: str, slave: str, number: int, size: int
    ) -> list[DeliveredKey] | None:
        pool = enc_pool(master, slave)
        now = self.clock.now()
        if self.store.count(pool, now) < number:
            return None
        holder = f"supply:{uuid.uuid4()}"
        try:
            blocks = self.store.reserve(
                pool, number, holder=holder, until=now + self.reservation_ttl_s, now=now
            )
        except KeyExhausted:
            return None
        if any(len(b.bits) != size for b in blocks):
            self.store.release(pool, [b.key_id for b in blocks], holder=holder)
            return None
        # reserve → deliver → consume: a crash before consume leaves a reservation that expires.
        delivered = [DeliveredKey(b.key_id, b.bits) for b in blocks]
        self.store.consume(pool, [b.key_id for b in blocks], holder=holder)
        self.stats.keys_supplied += number
        return delivered

    def relay_ahead(
        self,
        master_sae_id: str,
        slave_sae_id: str,
        slave_node_id: str,
        number: int,
        size_bits: int | None = None,
        policy: RelayPolicy | None = None,
    ) -> list[uuid.UUID]:
        """Relay keys ahead of demand: the result lands in both end nodes' pools under the
        same IDs (``enc:`` here, ``dec:`` at the slave's node); later ``supply`` calls for
        the pair take them without relaying. Returns the new key IDs.
        """
        size_bits = self.key_size_bits if size_bits is None else size_bits
        size = self._check_request(number, size_bits)
        seed = uuid.uuid4()
        key_ids = key_ids_from_seed(seed, number)
        keys = self._make_keys(
            master_sae_id, slave_sae_id, slave_node_id, seed, number, size,
            policy or RelayPolicy(), None,
        )
        now = self.clock.now()
        pair = f"{master_sae_id}>{slave_sae_id}"
        self.store.put(
            enc_pool(master_sae_id, slave_sae_id),
            [
                KeyBlock(kid, keys[i * size : (i + 1) * size], pair, now)
                for i, kid in enumerate(key_ids)
            ],
        )
        return key_ids

    def _make_keys(
        self,
        master: str,
        slave: str,
        slave_node: str,
        seed: uuid.UUID,
        number: int,
        size: int,
        policy: RelayPolicy,
        explicit: bytes | None,
    ) -> bytes:
        """Create the keys at the slave's node and return them (concatenated)."""
        if slave_node == self.node_id:
            if slave not in self.saes:
                raise ParameterError(
                    "slave_SAE_ID", f"SAE {slave!r} is not attached to {self.node_id!r}"
                )
            # Both SAEs on this node: no link is involved, the node's own randomness is used.
            keys = explicit if explicit is not None else secrets.token_bytes(number * size)
            self._store_dec(master, slave, key_ids_from_seed(seed, number), keys, size)
            return keys
        paths = self.paths_to(slave_node, policy)
        need = MAC_KEY_BYTES + number * size
        if self.probe:
            for path in paths:
                self._probe(path, need)
        relay_id = str(uuid.uuid4())
        k = len(paths)
        shares: list[bytes | None] = [None] * k
        if explicit is not None:
            # Random shares whose XOR is the given key (multicast over several paths).
            acc = explicit
            for i in range(k - 1):
                shares[i] = secrets.token_bytes(len(explicit))
                acc = _xor(acc, shares[i] or b"")
            shares[k - 1] = acc
        parts = [
            self._relay_path(relay_id, path, master, slave, seed, number, size, i, k, shares[i])
            for i, path in enumerate(paths)
        ]
        keys = parts[0]
        for part in parts[1:]:
            keys = _xor(keys, part)
        return keys

    def _store_dec(
        self, master: str, slave: str, key_ids: Sequence[uuid.UUID], keys: bytes, size: int
    ) -> None:
        now = self.clock.now()
        self.store.put(
            dec_pool(master, slave),
            [
                KeyBlock(kid, keys[i * size : (i + 1) * size], f"{master}>{slave}", now)
                for i, kid in enumerate(key_ids)
            ],
        )

    def retrieve(
        self, requesting_sae_id: str, master_sae_id: str, key_ids: Sequence[uuid.UUID]
    ) -> list[DeliveredKey]:
        """The keys ``key_ids`` that ``master_sae_id`` obtained for ``requesting_sae_id``
        (ETSI GS QKD 014 ``dec_keys``). Each key is handed out once, then erased.

        Raises Unauthorized (SAE not at this node, or the keys were made for another
        slave), KeyAlreadyConsumed (already retrieved), KeyNotFound (unknown ID).
        """
        if requesting_sae_id not in self.saes:
            raise Unauthorized(
                f"SAE {requesting_sae_id!r} is not attached to node {self.node_id!r}"
            )
        if not key_ids:
            raise ParameterError("key_IDs", "give at least one key ID")
        pool = dec_pool(master_sae_id, requesting_sae_id)
        holder = f"retrieve:{uuid.uuid4()}"
        now = self.clock.now()
        try:
            blocks = self.store.reserve_ids(
                pool, list(key_ids), holder=holder, until=now + self.reservation_ttl_s, now=now
            )
        except KeyNotFound:
            prefix = f"dec:{master_sae_id}:"
            for kid in key_ids:
                if any(p.startswith(prefix) and p != pool for p in self.store.locate(kid)):
                    raise Unauthorized(
                        f"key {kid} was not made for SAE {requesting_sae_id!r}"
                    ) from None
            raise
        delivered = [DeliveredKey(b.key_id, b.bits) for b in blocks]
        self.store.consume(pool, list(key_ids), holder=holder)
        self.stats.keys_retrieved += len(delivered)
        return delivered

    def status(self, master_sae_id: str, slave_sae_id: str, slave_node_id: str) -> PairStatus:
        """ETSI 014 Status for the pair. ``stored_key_count``: keys relayed ahead for the
        pair plus what this node's first-hop link key could make now (downstream hops
        are not asked, so a relay may still find a later hop short).
        """
        if master_sae_id not in self.saes:
            raise Unauthorized(f"SAE {master_sae_id!r} is not attached to node {self.node_id!r}")
        size = self.key_size_bits // 8
        count = self.store.count(enc_pool(master_sae_id, slave_sae_id), self.clock.now())
        if slave_node_id == self.node_id:
            count = self.max_key_count
        else:
            try:
                path = self.paths_to(slave_node_id, RelayPolicy())[0]
                avail = self.link_key_bytes(self.link_to(path[1]))
                count += max(0, avail - MAC_KEY_BYTES) // size
            except RoutingError:
                pass
        return PairStatus(
            source_kme_id=self.node_id,
            target_kme_id=slave_node_id,
            master_sae_id=master_sae_id,
            slave_sae_id=slave_sae_id,
            key_size=self.key_size_bits,
            stored_key_count=min(count, self.max_key_count),
            max_key_count=self.max_key_count,
            max_key_per_request=self.max_key_per_request,
            max_key_size=self.max_key_size_bits,
            min_key_size=self.min_key_size_bits,
            max_sae_id_count=self.max_sae_id_count,
        )

    # -- Kx: relay ----------------------------------------------------------------------------
    def _probe(self, path: list[str], need: int) -> None:
        """Ask each node of ``path`` whether its next link has ``need`` bytes (no key spent).

        Unauthenticated on purpose (it carries no secret and spends no key); a lie only
        makes the relay fail later. Raises KeyExhausted naming the short link.
        """
        link_id = self.link_to(path[1])
        avail = self.link_key_bytes(link_id)
        if avail < need:
            raise KeyExhausted(
                f"link {link_id!r} at node {self.node_id!r} has {avail} byte(s) of key, "
                f"the request needs {need}"
            )
        if len(path) == 2:
            return
        msg = KxMessage(
            MessageKind.PROBE, self.node_id, path[1], link_id,
            {"path": path, "hop": 1, "need": need},
        )
        try:
            resp = self.transport.send(msg)
        except QkdnetError as exc:
            raise RelayError(f"probe along {path} failed: {exc}") from exc
        if not resp.body.get("ok"):
            raise KeyExhausted(
                f"link {resp.body.get('link')!r} at node {resp.body.get('node')!r} has "
                f"{resp.body.get('available')} byte(s) of key, the request needs {need}"
            )

    def _relay_path(
        self,
        relay_id: str,
        path: list[str],
        master: str,
        slave: str,
        seed: uuid.UUID,
        number: int,
        size: int,
        part: int,
        parts: int,
        explicit: bytes | None,
    ) -> bytes:
        """Relay one key share along ``path`` from this (origin) node; returns the share."""
        link_id = self.link_to(path[1])
        ranges, material = self.store.take_bytes(
            link_pool(link_id), MAC_KEY_BYTES + number * size,
            direction=link_direction(self.node_id, path[1]),
        )
        self._count(self.stats.link_bytes_sent, link_id, len(material))
        mac_r, pad_req, pad_resp = material[:16], material[16:32], material[32:48]
        pad = material[MAC_KEY_BYTES:]
        if explicit is None:
            share, mode, ciphertext = pad, "link", ""
        else:
            share, mode, ciphertext = explicit, "otp", b64(_xor(explicit, pad))
        body = {
            "relay_id": relay_id,
            "key_seed": str(seed),
            "number": number,
            "size": size,
            "master": master,
            "slave": slave,
            "path": path,
            "hop": 1,
            "part": part,
            "parts": parts,
            "mode": mode,
            "ciphertext": ciphertext,
            "ranges": [r.to_json() for r in ranges],
        }
        msg = self._signed(MessageKind.RELAY, path[1], link_id, body, mac_r, pad_req)
        try:
            resp = self.transport.send(msg)
        except QkdnetError as exc:
            self.stats.relays_failed += 1
            raise RelayError(f"relay {relay_id} along {path} failed: {exc}") from exc
        self._check_response(resp, msg, mac_r, pad_resp)
        if resp.kind is MessageKind.RELAY_FAILED:
            self.stats.relays_failed += 1
            reason = resp.body.get("reason", "")
            text = f"relay {relay_id} along {path} failed: {resp.body.get('message', '')}"
            raise KeyExhausted(text) if reason == "exhausted" else RelayError(text)
        self.stats.relays_completed += 1
        return share

    def _signed(
        self, kind: MessageKind, target: str, link_id: str, body: dict[str, object],
        mac_r: bytes, pad: bytes,
    ) -> KxMessage:
        unsigned = KxMessage(kind, self.node_id, target, link_id, body)
        return KxMessage(kind, self.node_id, target, link_id, body,
                         mac_tag(unsigned.signed_bytes(), mac_r, pad).hex())

    def _check_response(self, resp: KxMessage, req: KxMessage, mac_r: bytes, pad: bytes) -> None:
        if (
            resp.kind not in (MessageKind.RELAY_COMPLETE, MessageKind.RELAY_FAILED)
            or resp.link_id != req.link_id
            or resp.source_node != req.target_node
            or resp.body.get("relay_id") != req.body.get("relay_id")
        ):
            raise RelayError(f"unexpected answer to relay {req.body.get('relay_id')}")
        try:
            mac_verify(resp.signed_bytes(), bytes.fromhex(resp.tag), mac_r, pad)
        except (ValueError, AuthenticationError) as exc:
            raise RelayError(
                f"relay {req.body.get('relay_id')}: completion message failed authentication"
            ) from exc

    @staticmethod
    def _count(counter: dict[str, int], link_id: str, n: int) -> None:
        counter[link_id] = counter.get(link_id, 0) + n

    def handle_message(self, message: KxMessage) -> KxMessage:
        """Answer a Kx message from a neighbour (what a transport calls on arrival)."""
        if message.target_node != self.node_id:
            raise RelayError(f"message for {message.target_node!r} reached {self.node_id!r}")
        if self.links.get(message.link_id) != message.source_node:
            raise AuthenticationError()
        if message.kind is MessageKind.PROBE:
            return self._handle_probe(message)
        if message.kind is MessageKind.KEY_SYNC:
            return self._handle_key_sync(message)
        if message.kind is MessageKind.RELAY:
            return self._handle_relay(message)
        raise RelayError(f"unexpected Kx message kind {message.kind.value!r}")

    def _handle_probe(self, message: KxMessage) -> KxMessage:
        path = list(message.body["path"])
        hop = int(message.body["hop"])
        need = int(message.body["need"])
        if not (0 < hop < len(path)) or path[hop] != self.node_id:
            raise RelayError("probe path does not pass this node")
        answer: dict[str, object] = {"ok": True}
        if hop < len(path) - 1:
            link_id = self.link_to(path[hop + 1])
            avail = self.link_key_bytes(link_id)
            if avail < need:
                answer = {"ok": False, "node": self.node_id, "link": link_id, "available": avail}
            else:
                fwd = KxMessage(
                    MessageKind.PROBE, self.node_id, path[hop + 1], link_id,
                    {"path": path, "hop": hop + 1, "need": need},
                )
                answer = dict(self.transport.send(fwd).body)
        return KxMessage(
            MessageKind.PROBE_RESULT, self.node_id, message.source_node, message.link_id, answer
        )

    def _handle_relay(self, message: KxMessage) -> KxMessage:
        body = message.body
        try:
            ranges = [KeyRange.from_json(r) for r in body["ranges"]]
            path = [str(n) for n in body["path"]]
            hop = int(body["hop"])
            size = int(body["size"])
            number = int(body["number"])
            if not (0 < number <= 1 << 16):
                raise ValueError(f"number {number} out of range")
            key_ids = key_ids_from_seed(uuid.UUID(str(body["key_seed"])), number)
            relay_id = str(body["relay_id"])
            part, parts = int(body["part"]), int(body["parts"])
            master, slave, mode = str(body["master"]), str(body["slave"]), str(body["mode"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RelayError(f"malformed relay message: {exc}") from exc
        if (
            not (0 < hop < len(path))
            or path[hop] != self.node_id
            or path[hop - 1] != message.source_node
        ):
            raise RelayError("relay path does not pass this node")
        pool = link_pool(message.link_id)
        direction = link_direction(message.source_node, self.node_id)
        material = self.store.read_ranges(pool, ranges, direction=direction)
        need = MAC_KEY_BYTES + len(key_ids) * size
        if len(material) != need:
            raise RelayError("relay message names the wrong amount of link key")
        mac_r, pad_req, pad_resp = material[:16], material[16:32], material[32:48]
        try:
            mac_verify(message.signed_bytes(), bytes.fromhex(message.tag), mac_r, pad_req)
        except ValueError as exc:
            raise AuthenticationError() from exc
        pad = material[MAC_KEY_BYTES:]
        if mode == "link" and hop == 1:
            share = pad
        elif mode in ("link", "otp"):
            share = _xor(unb64(str(body["ciphertext"])), pad)
        else:
            raise RelayError(f"unknown relay mode {mode!r}")

        def answer(kind: MessageKind, extra: dict[str, object]) -> KxMessage:
            return self._signed(
                kind, message.source_node, message.link_id, {"relay_id": relay_id, **extra},
                mac_r, pad_resp,
            )

        if hop == len(path) - 1:
            try:
                self._store_share(relay_id, master, slave, key_ids, size, share, part, parts)
            except (KeyManagementError, ParameterError) as exc:
                # Refused here (unknown SAE, clashing key ID): spend the incoming key anyway
                # so the link stays in step, and tell the origin.
                self.store.consume_ranges(pool, ranges, direction=direction)
                return answer(MessageKind.RELAY_FAILED, {"reason": "refused", "message": str(exc)})
            self.store.consume_ranges(pool, ranges, direction=direction)
            self._count(self.stats.link_bytes_received, message.link_id, need)
            return answer(MessageKind.RELAY_COMPLETE, {"node": self.node_id})
        # A trusted node: re-encrypt with the next hop's link key.
        next_node = path[hop + 1]
        try:
            next_link = self.link_to(next_node)
            out_ranges, out = self.store.take_bytes(
                link_pool(next_link), need, direction=link_direction(self.node_id, next_node)
            )
        except KeyManagementError as exc:
            # Consume the incoming key anyway so the link stays in step at both ends.
            self.store.consume_ranges(pool, ranges, direction=direction)
            reason = "exhausted" if isinstance(exc, KeyExhausted) else "error"
            return answer(MessageKind.RELAY_FAILED, {"reason": reason, "message": str(exc)})
        except RoutingError as exc:
            self.store.consume_ranges(pool, ranges, direction=direction)
            return answer(MessageKind.RELAY_FAILED, {"reason": "routing", "message": str(exc)})
        self._count(self.stats.link_bytes_sent, next_link, need)
        fwd_body = dict(body)
        fwd_body.update(
            hop=hop + 1,
            mode="otp",
            ciphertext=b64(_xor(share, out[MAC_KEY_BYTES:])),
            ranges=[r.to_json() for r in out_ranges],
        )
        fwd = self._signed(MessageKind.RELAY, next_node, next_link, fwd_body, out[:16], out[16:32])
        try:
            resp = self.transport.send(fwd)
            self._check_response(resp, fwd, out[:16], out[32:48])
        except QkdnetError as exc:
            self.store.consume_ranges(pool, ranges, direction=direction)
            return answer(MessageKind.RELAY_FAILED, {"reason": "error", "message": str(exc)})
        self.store.consume_ranges(pool, ranges, direction=direction)
        self._count(self.stats.link_bytes_received, message.link_id, need)
        return answer(resp.kind, {k: v for k, v in resp.body.items() if k != "relay_id"})

    def purge_stale_shares(self, max_age_s: float | None = None) -> int:
        """Erase shares of multi-path relays that never completed (a path failed) and are
        older than ``max_age_s`` seconds (default: the reservation TTL); returns how many."""
        max_age_s = self.reservation_ttl_s if max_age_s is None else max_age_s
        cutoff = self.clock.now() - max_age_s
        erased = 0
        for pool in self.store.pools():
            if pool.startswith("stage:"):
                blocks = self.store.blocks(pool)
                if blocks and max(b.created for b in blocks) < cutoff:
                    erased += self.store.purge(pool)
        return erased

    def _store_share(
        self, relay_id: str, master: str, slave: str, key_ids: list[uuid.UUID], size: int,
        share: bytes, part: int, parts: int,
    ) -> None:
        if slave not in self.saes:
            raise RelayError(f"SAE {slave!r} is not attached to node {self.node_id!r}")
        if parts == 1:
            self._store_dec(master, slave, key_ids, share, size)
            return
        # Multi-path (X.1714): keep the share until all k have arrived, then store the XOR.
        if not (0 <= part < parts) or relay_id.count(":"):
            raise RelayError("bad share index")
        stage = f"stage:{relay_id}"
        now = self.clock.now()
        self.purge_stale_shares()
        blocks = [
            KeyBlock(uuid.uuid5(kid, str(part)), share[i * size : (i + 1) * size], stage, now)
            for i, kid in enumerate(key_ids)
        ]
        self.store.put(stage, blocks)
        staged = self.store.blocks(stage)
        if len(staged) < parts * len(key_ids):
            return
        by_id = {b.key_id: b.bits for b in staged}
        keys = b""
        for kid in key_ids:
            combined = bytes(size)
            for p in range(parts):
                combined = _xor(combined, by_id[uuid.uuid5(kid, str(p))])
            keys += combined
        self._store_dec(master, slave, key_ids, keys, size)
        self.store.purge(stage)
