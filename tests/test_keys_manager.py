"""Key managers: supply, retrieval, trusted-node relay and multi-path combination.

Runs on both store backends (``store_factory``). Link keys are drawn from a seeded
generator and deposited at both ends, as a QKD link's post-processing would.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from qkdnet.errors import (
    AuthenticationError,
    KeyAlreadyConsumed,
    KeyExhausted,
    KeyNotFound,
    ParameterError,
    RelayError,
    RoutingError,
    Unauthorized,
)
from qkdnet.keys import (
    MAC_KEY_BYTES,
    InProcessTransport,
    KeyManager,
    KeyRange,
    KxMessage,
    MessageKind,
    RelayPolicy,
    SimulatedClock,
    SQLiteKeyStore,
    dec_pool,
    enc_pool,
    link_pool,
)
from qkdnet.keys.transport import unb64

Factory = Callable[[str], Any]


@dataclass
class Net:
    graph: nx.Graph
    kms: dict[str, KeyManager]
    transport: InProcessTransport
    clock: SimulatedClock
    link_bits: dict[uuid.UUID, bytes] = field(default_factory=dict)

    def link(self, a: str, b: str) -> str:
        return "-".join(sorted((a, b)))

    def feed(
        self, a: str, b: str, rng: np.random.Generator, blocks: int, size: int,
        parity: int | None = None,
    ) -> None:
        """Deposit ``blocks`` link keys at both ends; ``parity`` fixes that of each key ID's
        last hex digit (0: home blocks of the smaller node ID's direction, 1: the other's)."""
        for _ in range(blocks):
            raw = bytearray(rng.bytes(16))
            if parity is not None:
                raw[15] = (raw[15] & 0xFE) | parity
            bits, kid = rng.bytes(size), uuid.UUID(bytes=bytes(raw), version=4)
            self.link_bits[kid] = bits
            self.kms[a].deposit_link_key(self.link(a, b), bits, kid)
            self.kms[b].deposit_link_key(self.link(a, b), bits, kid)

    def avail(self) -> dict[tuple[str, str], int]:
        out = {}
        for a, b in self.graph.edges:
            out[(a, b)] = self.kms[a].link_key_bytes(self.link(a, b))
            out[(b, a)] = self.kms[b].link_key_bytes(self.link(a, b))
        return out

    def in_step(self) -> bool:
        for a, b in self.graph.edges:
            pool = link_pool(self.link(a, b))
            left = [(x.key_id, x.bits) for x in self.kms[a].store.blocks(pool)]
            right = [(x.key_id, x.bits) for x in self.kms[b].store.blocks(pool)]
            if left != right:
                return False
        return True

    def material(self, ranges: Iterable[KeyRange]) -> bytes:
        return b"".join(self.link_bits[r.key_id][r.start : r.end] for r in ranges)


def make_net(
    store_factory: Factory,
    edges: list[tuple[str, str]],
    rng: np.random.Generator,
    *,
    blocks: int = 4,
    size: int = 256,
    **km_kwargs: Any,
) -> Net:
    graph = nx.Graph(edges)
    transport, clock = InProcessTransport(), SimulatedClock(1000.0)

    def router(origin: str, dest: str, policy: RelayPolicy) -> list[list[str]]:
        g = graph.subgraph(n for n in graph if n not in policy.avoid_nodes)
        return sorted(nx.all_simple_paths(g, origin, dest), key=lambda p: (len(p), p))

    kms = {
        n: KeyManager(n, store_factory(n), transport, clock, router, **km_kwargs)
        for n in sorted(graph)
    }
    net = Net(graph, kms, transport, clock)
    for n, km in kms.items():
        transport.attach(n, km.handle_message)
        km.register_sae(f"sae-{n}")
    for a, b in graph.edges:
        kms[a].add_link(net.link(a, b), b)
        kms[b].add_link(net.link(a, b), a)
        net.feed(a, b, rng, blocks, size)
    return net


CHAIN4 = [("A", "B"), ("B", "C"), ("C", "D")]
DIAMOND = [("A", "B"), ("B", "D"), ("A", "C"), ("C", "D")]


def test_direct_supply_and_retrieve(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B")], np.random.default_rng(1))
    keys = net.kms["A"].supply("sae-A", "sae-B", "B", number=3, size_bits=256)
    assert len(keys) == 3 and all(len(k.key) == 32 for k in keys)
    assert len({k.key_id for k in keys}) == 3
    got = net.kms["B"].retrieve("sae-B", "sae-A", [k.key_id for k in keys])
    assert got == keys  # same IDs, same bits at both ends
    with pytest.raises(KeyAlreadyConsumed):
        net.kms["B"].retrieve("sae-B", "sae-A", [keys[0].key_id])
    with pytest.raises(KeyNotFound):
        net.kms["B"].retrieve("sae-B", "sae-A", [uuid.uuid4()])


def test_supply_checks_callers_and_sizes(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B")], np.random.default_rng(2))
    km = net.kms["A"]
    with pytest.raises(Unauthorized):
        km.supply("sae-B", "sae-A", "A", 1, 256)  # sae-B lives at node B
    with pytest.raises(ParameterError, match="size shall be a multiple of 8"):
        km.supply("sae-A", "sae-B", "B", 1, 100)
    with pytest.raises(ParameterError, match="number"):
        km.supply("sae-A", "sae-B", "B", 0, 256)
    before = net.avail()
    net.kms["B"].register_sae("eve")
    keys = km.supply("sae-A", "sae-B", "B", 1, 256)
    assert net.avail() != before
    with pytest.raises(Unauthorized):
        net.kms["B"].retrieve("eve", "sae-A", [keys[0].key_id])  # made for sae-B only
    with pytest.raises(Unauthorized):
        net.kms["A"].retrieve("sae-B", "sae-A", [keys[0].key_id])  # sae-B is not at A
    assert net.kms["B"].retrieve("sae-B", "sae-A", [keys[0].key_id]) == keys


@pytest.mark.parametrize("hops", [1, 3])
def test_relay_accounting_is_exact_and_ends_stay_in_step(
    store_factory: Factory, hops: int
) -> None:
    net = make_net(store_factory, CHAIN4 + [("D", "E")], np.random.default_rng(3 + hops))
    dest = "ABCD"[hops]
    before = net.avail()
    number, size_bits = 4, 512
    keys = net.kms["A"].supply("sae-A", f"sae-{dest}", dest, number, size_bits)
    got = net.kms[dest].retrieve(f"sae-{dest}", "sae-A", [k.key_id for k in keys])
    assert got == keys
    after = net.avail()
    per_hop = MAC_KEY_BYTES + number * size_bits // 8
    path = "ABCDE"[: hops + 1]
    on_path = {(a, b) for a, b in zip(path, path[1:], strict=False)}
    on_path |= {(b, a) for a, b in on_path}
    for end, left in after.items():
        # Every hop spends exactly pad + MAC key at both ends; other links spend nothing.
        assert before[end] - left == (per_hop if end in on_path else 0), end
    assert net.in_step()
    assert net.kms["A"].stats.link_bytes_sent == {net.link("A", "B"): per_hop}


def test_relayed_key_never_crosses_the_wire_in_clear(store_factory: Factory) -> None:
    net = make_net(store_factory, CHAIN4, np.random.default_rng(5))
    seen: list[bytes] = []
    net.transport.taps.append(lambda req, resp: seen.extend(
        [req.encode()] + ([resp.encode()] if resp else [])))
    keys = net.kms["A"].supply("sae-A", "sae-D", "D", 2, 256)
    assert len(seen) >= 6  # probe + relay on 3 hops (requests and answers)
    for k in keys:
        for raw in seen:
            assert k.key.hex() not in raw.decode()
            assert base64.b64encode(k.key)[:12] not in raw
    # Each relay message carries a tag; hop 2 and 3 carry only one-time-padded key.
    relays = [KxMessage.decode(r) for r in seen if b'"kind":"relay"' in r]
    assert sorted(m.body["hop"] for m in relays) == [1, 2, 3]
    assert all(len(m.tag) == 32 for m in relays)


class Tamper:
    """A transport that lets a man in the middle change or replay relay messages."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.flip_ciphertext_on: str | None = None
        self.recorded: list[KxMessage] = []

    def send(self, message: KxMessage) -> KxMessage:
        if message.kind is MessageKind.RELAY:
            self.recorded.append(message)
            if message.target_node == self.flip_ciphertext_on:
                body = dict(message.body)
                ct = bytearray(unb64(body["ciphertext"]))
                ct[0] ^= 1
                body["ciphertext"] = base64.b64encode(bytes(ct)).decode()
                message = KxMessage(message.kind, message.source_node, message.target_node,
                                    message.link_id, body, message.tag)
        return self.inner.send(message)


def test_tampered_or_replayed_relay_is_refused(store_factory: Factory) -> None:
    net = make_net(store_factory, CHAIN4, np.random.default_rng(6))
    tamper = Tamper(net.transport)
    for km in net.kms.values():
        km.transport = tamper
    tamper.flip_ciphertext_on = "C"  # B -> C carries one-time-padded key: flip one bit
    with pytest.raises(RelayError):
        net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256)
    assert net.kms["D"].store.pools() == [link_pool("C-D")]  # no key stored at D
    tamper.flip_ciphertext_on = None
    keys = net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256)
    assert net.kms["D"].retrieve("sae-D", "sae-A", [keys[0].key_id]) == keys
    # Replaying the last hop's message: the link key it names is gone, so it is refused.
    last = tamper.recorded[-1]
    with pytest.raises((KeyAlreadyConsumed, AuthenticationError)):
        net.kms["D"].handle_message(last)
    # A forged tag is refused with one opaque error.
    forged = KxMessage(last.kind, last.source_node, last.target_node, last.link_id,
                       last.body, "00" * 16)
    with pytest.raises((AuthenticationError, KeyAlreadyConsumed)):
        net.kms["D"].handle_message(forged)


def test_forged_tag_on_fresh_key_is_refused_and_spends_nothing(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B")], np.random.default_rng(7))
    ranges, _ = net.kms["A"].store.take_bytes(link_pool("A-B"), MAC_KEY_BYTES + 32)
    body = {"relay_id": "r", "key_seed": str(uuid.uuid4()), "number": 1, "size": 32,
            "master": "sae-A", "slave": "sae-B", "path": ["A", "B"], "hop": 1,
            "part": 0, "parts": 1,
            "mode": "link", "ciphertext": "", "ranges": [r.to_json() for r in ranges]}
    forged = KxMessage(MessageKind.RELAY, "A", "B", "A-B", body, "ab" * 16)
    before = net.kms["B"].link_key_bytes("A-B")
    with pytest.raises(AuthenticationError):
        net.kms["B"].handle_message(forged)
    assert net.kms["B"].link_key_bytes("A-B") == before  # a forgery erases nothing
    assert net.kms["B"].store.pools() == [link_pool("A-B")]


def test_exhaustion_is_specific_and_leaves_nothing_half_done(store_factory: Factory) -> None:
    rng = np.random.default_rng(8)
    net = make_net(store_factory, CHAIN4, rng, blocks=1, size=256)
    net.feed("A", "B", rng, 2, 256)
    net.feed("B", "C", rng, 2, 256)
    # C-D has 256 bytes; a request for 8 keys of 256 bits needs 48 + 256 bytes per hop.
    before = net.avail()
    with pytest.raises(KeyExhausted, match="link 'C-D' at node 'C' has 256 byte"):
        net.kms["A"].supply("sae-A", "sae-D", "D", 8, 256)
    assert net.avail() == before  # the probe found the dry hop before any key was spent
    assert all(p.startswith("link:") for km in net.kms.values() for p in km.store.pools())
    with pytest.raises(KeyExhausted, match="link 'A-B' at node 'A' has 768 byte"):
        net.kms["A"].supply("sae-A", "sae-B", "B", 24, 256)
    assert net.avail() == before


def test_exhaustion_mid_path_without_probe_keeps_links_in_step(store_factory: Factory) -> None:
    net = make_net(store_factory, CHAIN4, np.random.default_rng(9), blocks=2, size=256,
                   probe=False)
    net.kms["C"].store.take_bytes(link_pool("C-D"), 400)  # C-D nearly dry at C only
    net.kms["D"].store.take_bytes(link_pool("C-D"), 400)
    before = net.avail()
    with pytest.raises(KeyExhausted, match="C-D"):
        net.kms["A"].supply("sae-A", "sae-D", "D", 4, 256)
    after = net.avail()
    spent = MAC_KEY_BYTES + 4 * 32
    # Hops before the dry one spent their key at both ends; nothing else moved.
    assert before[("A", "B")] - after[("A", "B")] == spent == before[("B", "A")] - after[("B", "A")]
    assert before[("B", "C")] - after[("B", "C")] == spent == before[("C", "B")] - after[("C", "B")]
    assert after[("C", "D")] == before[("C", "D")]
    assert net.in_step()
    assert not [p for km in net.kms.values() for p in km.store.pools() if not p.startswith("link:")]


def test_multicast_same_keys_to_every_slave(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B"), ("A", "C"), ("C", "D")], np.random.default_rng(10))
    keys = net.kms["A"].supply("sae-A", "sae-B", "B", 2, 256, additional_slaves=[("sae-D", "D")])
    ids = [k.key_id for k in keys]
    assert net.kms["B"].retrieve("sae-B", "sae-A", ids) == keys
    assert net.kms["D"].retrieve("sae-D", "sae-A", ids) == keys


def test_same_node_pair_and_status(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B")], np.random.default_rng(11))
    net.kms["A"].register_sae("sae-A2")
    keys = net.kms["A"].supply("sae-A", "sae-A2", "A", 2, 128)
    assert net.kms["A"].retrieve("sae-A2", "sae-A", [k.key_id for k in keys]) == keys
    status = net.kms["A"].status("sae-A", "sae-B", "B")
    assert status.stored_key_count == (4 * 256 - MAC_KEY_BYTES) // 32
    assert (status.source_kme_id, status.target_kme_id, status.key_size) == ("A", "B", 256)


def test_relay_ahead_fills_both_end_pools_under_one_id(store_factory: Factory) -> None:
    net = make_net(store_factory, CHAIN4, np.random.default_rng(12))
    ids = net.kms["A"].relay_ahead("sae-A", "sae-D", "D", 3)
    a_side = net.kms["A"].store.blocks(enc_pool("sae-A", "sae-D"))
    d_side = net.kms["D"].store.blocks(dec_pool("sae-A", "sae-D"))
    assert [b.key_id for b in a_side] == [b.key_id for b in d_side] == ids
    assert [b.bits for b in a_side] == [b.bits for b in d_side]
    before = net.avail()
    keys = net.kms["A"].supply("sae-A", "sae-D", "D", 2, 256)
    assert net.avail() == before  # served from the pool, no relay
    assert [k.key_id for k in keys] == ids[:2]
    assert net.kms["D"].retrieve("sae-D", "sae-A", ids[:2]) == keys


def test_crashed_retrieval_reservation_expires(store_factory: Factory) -> None:
    net = make_net(store_factory, [("A", "B")], np.random.default_rng(13), reservation_ttl_s=30.0)
    keys = net.kms["A"].supply("sae-A", "sae-B", "B", 1, 256)
    pool = dec_pool("sae-A", "sae-B")
    now = net.clock.now()
    # A retrieval that reserved the key and died before consuming it:
    net.kms["B"].store.reserve_ids(pool, [keys[0].key_id], holder="dead", until=now + 30, now=now)
    with pytest.raises(KeyNotFound):
        net.kms["B"].retrieve("sae-B", "sae-A", [keys[0].key_id])
    net.clock.advance(30.0)
    assert net.kms["B"].retrieve("sae-B", "sae-A", [keys[0].key_id]) == keys


def test_multipath_combines_keys_over_disjoint_paths(store_factory: Factory) -> None:
    net = make_net(store_factory, DIAMOND, np.random.default_rng(14))
    before = net.avail()
    keys = net.kms["A"].supply("sae-A", "sae-D", "D", 2, 256, policy=RelayPolicy(paths=2))
    assert net.kms["D"].retrieve("sae-D", "sae-A", [k.key_id for k in keys]) == keys
    after = net.avail()
    per_hop = MAC_KEY_BYTES + 2 * 32
    assert all(before[e] - after[e] == per_hop for e in before)  # all four links, both ends
    assert net.in_step()
    assert not [p for p in net.kms["D"].store.pools() if p.startswith("stage:")]
    with pytest.raises(RoutingError, match="needs 3"):
        net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256, policy=RelayPolicy(paths=3))
    with pytest.raises(RoutingError):
        net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256,
                            policy=RelayPolicy(paths=2, avoid_nodes=frozenset({"B"})))


def _view_of(net: Net, node: str, log: list[tuple[KxMessage, KxMessage | None]]) -> list[bytes]:
    """What a compromised trusted node learns: the plaintext shares it relayed, computed
    from the messages it received and its own link keys (the test knows all link keys)."""
    shares = []
    for req, _ in log:
        if req.kind is MessageKind.RELAY and req.target_node == node:
            material = net.material(KeyRange.from_json(r) for r in req.body["ranges"])
            pad = material[MAC_KEY_BYTES:]
            if req.body["mode"] == "link" and req.body["hop"] == 1:
                shares.append(pad)
            else:
                ct = unb64(req.body["ciphertext"])
                shares.append(bytes(x ^ y for x, y in zip(ct, pad, strict=True)))
    return shares


@pytest.mark.parametrize("paths", [1, 2])
def test_compromised_trusted_node_view_vs_end_key(tmp_path: Path, paths: int) -> None:
    # 300 one-byte keys relayed from A to D; node B is compromised. With one path B's view
    # is the end key (the positive control); with two node-disjoint paths the end key is
    # independent of it: P(view == key) = 1/256 and each bit agrees half the time.
    trials = 300
    # The property is the relay's, not the store's: SQLite only, to keep the suite quick.
    def store_factory(name: str) -> SQLiteKeyStore:
        return SQLiteKeyStore(tmp_path / f"{name}.db", synchronous="OFF")

    net = make_net(store_factory, DIAMOND, np.random.default_rng(15), blocks=trials // 4 + 2,
                   size=4 * (MAC_KEY_BYTES + 1), min_key_size_bits=8)
    log: list[tuple[KxMessage, KxMessage | None]] = []
    net.transport.taps.append(lambda req, resp: log.append((req, resp)))
    policy = RelayPolicy(paths=paths, avoid_nodes=frozenset() if paths == 2 else frozenset("C"))
    end_keys = []
    for _ in range(trials):
        end_keys.append(net.kms["A"].supply("sae-A", "sae-D", "D", 1, 8, policy=policy)[0].key)
    view = _view_of(net, "B", log)
    assert len(view) == trials
    k = np.frombuffer(b"".join(end_keys), dtype=np.uint8)
    v = np.frombuffer(b"".join(view), dtype=np.uint8)
    equal = int((k == v).sum())
    agree = np.unpackbits((~(k ^ v)).astype(np.uint8)).reshape(trials, 8).mean(axis=0)
    if paths == 1:
        assert equal == trials
    else:
        # Binomial(300, 1/256): mean 1.2, P(X >= 9) < 1e-5.
        assert equal < 9
        # Binomial(300, 1/2)/300 per bit: 4.5 sigma band = +-0.13.
        assert np.all(np.abs(agree - 0.5) < 0.13), agree


def test_relay_to_unknown_sae_fails_and_keeps_links_in_step(store_factory: Factory) -> None:
    net = make_net(store_factory, CHAIN4, np.random.default_rng(16))
    with pytest.raises(RelayError, match="not attached"):
        net.kms["A"].supply("sae-A", "nobody", "D", 1, 256)
    assert net.in_step()
    assert not [p for km in net.kms.values() for p in km.store.pools() if not p.startswith("link:")]


def test_failed_multipath_share_is_purged_after_ttl(store_factory: Factory) -> None:
    net = make_net(store_factory, DIAMOND, np.random.default_rng(17), reservation_ttl_s=10.0)
    net.transport.detach("C")  # the second path is down: the probe notices, nothing is spent
    before = net.avail()
    with pytest.raises(RelayError, match="unreachable"):
        net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256, policy=RelayPolicy(paths=2))
    assert net.avail() == before
    for km in net.kms.values():
        km.probe = False  # without the probe, the first share arrives and waits
    with pytest.raises(RelayError):
        net.kms["A"].supply("sae-A", "sae-D", "D", 1, 256, policy=RelayPolicy(paths=2))
    stage = [p for p in net.kms["D"].store.pools() if p.startswith("stage:")]
    assert len(stage) == 1  # the share that came over A-B-D waits for its twin
    assert net.kms["D"].purge_stale_shares() == 0  # not stale yet
    net.clock.advance(11.0)
    assert net.kms["D"].purge_stale_shares() == 1
    assert not [p for p in net.kms["D"].store.pools() if p.startswith("stage:")]


class CrossFire:
    """Delivers A's first relay message only after B has sent its own over the same link."""

    def __init__(self, net: Net) -> None:
        self.net = net
        self.armed = True
        self.b_error: Exception | None = None
        self.b_keys: list[Any] | None = None

    def send(self, message: KxMessage) -> KxMessage:
        if self.armed and message.kind is MessageKind.RELAY and message.source_node == "A":
            self.armed = False
            try:
                self.b_keys = self.net.kms["B"].supply("sae-B", "sae-A", "A", 1, 256)
            except RelayError as exc:
                self.b_error = exc
        return self.net.transport.send(message)


def test_both_ends_relaying_at_once_use_disjoint_bytes_and_both_succeed(
    store_factory: Factory,
) -> None:
    # A's relay message is held back until B has relayed over the same link the other way.
    # Before link directions, both took the same oldest bytes and both relays were refused;
    # now A (the smaller ID) takes from the start of its home blocks, B from the end of
    # its own, and both relays succeed.
    rng = np.random.default_rng(18)
    net = make_net(store_factory, [("A", "B")], rng, blocks=0, probe=False)
    net.feed("A", "B", rng, 2, 256, parity=0)
    net.feed("A", "B", rng, 2, 256, parity=1)
    cross = CrossFire(net)
    net.kms["A"].transport = cross
    net.kms["B"].transport = cross
    log: list[KxMessage] = []
    net.transport.taps.append(lambda req, resp: log.append(req))
    before = net.avail()
    keys = net.kms["A"].supply("sae-A", "sae-B", "B", 1, 256)
    assert cross.b_error is None and cross.b_keys is not None  # B's relay went through too
    ranges = {m.source_node: [KeyRange.from_json(r) for r in m.body["ranges"]]
              for m in log if m.kind is MessageKind.RELAY}
    per_relay = MAC_KEY_BYTES + 32
    home = {"A": 0, "B": 1}
    for node, rs in ranges.items():
        assert len(rs) == 1 and rs[0].size_bytes == per_relay
        assert int(str(rs[0].key_id)[-1], 16) % 2 == home[node]  # each from its own blocks
    assert ranges["A"][0].start == 0 and ranges["B"][0].end == 256  # start vs end of block
    after = net.avail()
    assert all(before[e] - after[e] == 2 * per_relay for e in before)  # both relays, exactly
    assert net.in_step()
    assert net.kms["B"].retrieve("sae-B", "sae-A", [keys[0].key_id]) == keys
    assert net.kms["A"].retrieve("sae-A", "sae-B", [cross.b_keys[0].key_id]) == cross.b_keys
    assert net.material(ranges["A"])[MAC_KEY_BYTES:] == keys[0].key  # first hop: the pad
    assert net.material(ranges["B"])[MAC_KEY_BYTES:] == cross.b_keys[0].key


class Rendezvous:
    """Holds each side's first relay message until the other side's is in flight too."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=20.0)
        self.waited: set[str] = set()
        self.lock = threading.Lock()

    def send(self, message: KxMessage) -> KxMessage:
        with self.lock:
            first = message.kind is MessageKind.RELAY and message.source_node not in self.waited
            self.waited.add(message.source_node)
        if first:
            self.barrier.wait()
        return self.inner.send(message)


def test_two_managers_relaying_in_opposite_directions_concurrently(
    store_factory: Factory,
) -> None:
    # Two threads, one per node, each supplying keys to an SAE at the other node over the
    # same link, their first messages in flight at the same moment. Every relay succeeds
    # (each node's own relays stay in order), every key is the same at both ends, and
    # each end of the link spent exactly the key of both directions' relays.
    rng = np.random.default_rng(30)
    net = make_net(store_factory, [("A", "B")], rng, blocks=0, probe=False)
    net.feed("A", "B", rng, 2, 2048, parity=0)
    net.feed("A", "B", rng, 2, 2048, parity=1)
    rendezvous = Rendezvous(net.transport)
    for km in net.kms.values():
        km.transport = rendezvous
    before = net.avail()
    rounds, number, size_bits = 20, 2, 128
    got: dict[str, list[Any]] = {"A": [], "B": []}
    errors: list[BaseException] = []

    def hammer(node: str, peer: str) -> None:
        try:
            for _ in range(rounds):
                got[node] += net.kms[node].supply(f"sae-{node}", f"sae-{peer}", peer,
                                                  number, size_bits)
        except BaseException as exc:  # reported below, with the node
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=p) for p in (("A", "B"), ("B", "A"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60.0)
    assert not errors, errors
    assert len(got["A"]) == len(got["B"]) == rounds * number
    per_relay = MAC_KEY_BYTES + number * size_bits // 8
    after = net.avail()
    assert all(before[e] - after[e] == 2 * rounds * per_relay for e in before)
    assert net.in_step()
    for node, peer in (("A", "B"), ("B", "A")):
        keys = got[node]
        assert net.kms[peer].retrieve(f"sae-{peer}", f"sae-{node}",
                                      [k.key_id for k in keys]) == keys
    assert len({k.key for k in got["A"] + got["B"]}) == 2 * rounds * number
