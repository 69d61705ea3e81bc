"""The key-store suite, run against both backends (SQLite file, real PostgreSQL server)."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import KeyAlreadyConsumed, KeyExhausted, KeyNotFound, ParameterError
from qkdnet.keys import BACK, FRONT, KeyBlock, KeyRange, SQLiteKeyStore

Factory = Callable[[str], Any]


def block_id(parity: int | None = None) -> uuid.UUID:
    """A random key ID; ``parity`` 0 or 1 fixes that of its last hex digit (0: a home block
    of the FRONT direction, 1: of BACK; see ``take_bytes``)."""
    raw = bytearray(os.urandom(16))
    if parity is not None:
        raw[15] = (raw[15] & 0xFE) | parity
    return uuid.UUID(bytes=bytes(raw), version=4)


def blocks(
    n: int, size: int = 32, link: str = "L", t0: float = 0.0, parity: int | None = None
) -> list[KeyBlock]:
    return [KeyBlock(block_id(parity), os.urandom(size), link, t0 + i) for i in range(n)]


def home_first(bs: list[KeyBlock], direction: str) -> list[KeyBlock]:
    """The order in which ``direction`` uses blocks: its home blocks, then the others."""
    home = 0 if direction == FRONT else 1
    return sorted(bs, key=lambda b: int(str(b.key_id)[-1], 16) % 2 != home)  # stable


def test_put_count_and_idempotent_retry(store_factory: Factory) -> None:
    store = store_factory("A")
    bs = blocks(5)
    assert store.put("p", bs) == 5
    assert store.count("p") == 5
    assert store.put("p", bs[:2]) == 0  # a retried deposit is a no-op
    assert store.count("p") == 5
    assert [b.bits for b in store.blocks("p")] == [b.bits for b in bs]
    assert store.available_bytes("p") == 5 * 32
    assert store.count("other") == 0


def test_put_conflicting_bits_stores_nothing(store_factory: Factory) -> None:
    store = store_factory("A")
    b = blocks(1)[0]
    store.put("p", [b])
    clash = KeyBlock(b.key_id, os.urandom(32), "L", 1.0)
    with pytest.raises(ParameterError):
        store.put("p", [*blocks(2), clash])
    assert store.count("p") == 1  # the two good blocks of the failed batch are not there


def test_put_batch_is_all_or_nothing(store_factory: Factory) -> None:
    store = store_factory("A")
    old = blocks(1)[0]
    store.put("p", [old])
    store.reserve_ids("p", [old.key_id], holder="h", until=1.0, now=0.0)
    store.consume("p", [old.key_id], holder="h")
    fresh = blocks(450)  # more than one chunk of the set-wise queries
    with pytest.raises(KeyAlreadyConsumed):
        store.put("p", [*fresh, old])
    twin = KeyBlock(fresh[0].key_id, os.urandom(32), "L", 0.0)
    with pytest.raises(ParameterError, match="twice"):
        store.put("p", [fresh[0], twin])
    assert store.count("p") == 0
    assert store.put("p", fresh + fresh[:3]) == 450  # a repeated identical block is one
    assert store.put("p", fresh) == 0


def test_reserve_consume_erases_and_never_again(store_factory: Factory) -> None:
    store = store_factory("A")
    bs = blocks(3)
    store.put("p", bs)
    got = store.reserve("p", 2, holder="h", until=10.0, now=0.0)
    assert [g.key_id for g in got] == [bs[0].key_id, bs[1].key_id]  # oldest first
    assert [g.bits for g in got] == [bs[0].bits, bs[1].bits]
    assert store.count("p", now=1.0) == 1
    store.consume("p", [g.key_id for g in got], holder="h")
    assert store.count("p") == 1
    assert store.is_consumed("p", bs[0].key_id)
    with pytest.raises(KeyAlreadyConsumed):
        store.reserve_ids("p", [bs[0].key_id], holder="h2", until=10.0, now=1.0)
    with pytest.raises(KeyAlreadyConsumed):
        store.put("p", [bs[0]])  # a consumed ID can never come back
    with pytest.raises(KeyAlreadyConsumed):
        store.consume("p", [bs[1].key_id], holder="h")


def test_reserve_is_all_or_nothing(store_factory: Factory) -> None:
    store = store_factory("A")
    store.put("p", blocks(2))
    with pytest.raises(KeyExhausted, match="2 free key"):
        store.reserve("p", 3, holder="h", until=10.0, now=0.0)
    assert store.count("p", now=0.0) == 2  # nothing was reserved
    bs = store.blocks("p")
    with pytest.raises(KeyNotFound):
        store.reserve_ids("p", [bs[0].key_id, uuid.uuid4()], holder="h", until=9.0, now=0.0)
    assert store.count("p", now=0.0) == 2


def test_consume_needs_the_holder_and_is_atomic(store_factory: Factory) -> None:
    store = store_factory("A")
    bs = blocks(2)
    store.put("p", bs)
    store.reserve_ids("p", [bs[0].key_id], holder="h1", until=10.0, now=0.0)
    store.reserve_ids("p", [bs[1].key_id], holder="h2", until=10.0, now=0.0)
    with pytest.raises(KeyNotFound):
        store.consume("p", [bs[0].key_id, bs[1].key_id], holder="h1")
    assert store.count("p") == 2  # the first was not consumed either
    store.release("p", [bs[0].key_id], holder="h1")
    assert store.count("p", now=0.0) == 1


def test_reservations_expire(store_factory: Factory) -> None:
    store = store_factory("A")
    bs = blocks(1)
    store.put("p", bs)
    store.reserve("p", 1, holder="h1", until=5.0, now=0.0)
    with pytest.raises(KeyExhausted):
        store.reserve("p", 1, holder="h2", until=9.0, now=4.9)
    with pytest.raises(KeyNotFound):
        store.reserve_ids("p", [bs[0].key_id], holder="h2", until=9.0, now=4.9)
    again = store.reserve("p", 1, holder="h2", until=9.0, now=5.0)  # expired at t = 5 s
    assert again[0].key_id == bs[0].key_id
    with pytest.raises(KeyNotFound):
        store.consume("p", [bs[0].key_id], holder="h1")  # the late first holder lost it
    store.consume("p", [bs[0].key_id], holder="h2")
    assert store.count("p") == 0


def test_ranges_keep_both_ends_in_step(store_factory: Factory) -> None:
    alice, bob = store_factory("A"), store_factory("B")
    bs = blocks(3, size=40, parity=0)  # FRONT's home blocks: used in deposit order
    alice.put("l", bs)
    bob.put("l", bs)
    ranges, got = alice.take_bytes("l", 70)
    stream = b"".join(b.bits for b in bs)
    assert got == stream[:70]
    assert [(r.key_id, r.start, r.end) for r in ranges] == [
        (bs[0].key_id, 0, 40), (bs[1].key_id, 0, 30)
    ]
    assert bob.read_ranges("l", ranges) == got  # reading consumes nothing
    assert bob.consume_ranges("l", ranges) == got
    assert alice.available_bytes("l") == bob.available_bytes("l") == 50
    assert [b.bits for b in alice.blocks("l")] == [b.bits for b in bob.blocks("l")]
    with pytest.raises(KeyAlreadyConsumed):
        bob.consume_ranges("l", ranges)  # a replayed message
    assert alice.is_consumed("l", bs[0].key_id) and bob.is_consumed("l", bs[0].key_id)


def test_range_gap_is_erased_at_the_lagging_end(store_factory: Factory) -> None:
    alice, bob = store_factory("A"), store_factory("B")
    bs = blocks(1, size=64)
    alice.put("l", bs)
    bob.put("l", bs)
    alice.take_bytes("l", 10)  # the sender took these, then crashed before sending
    ranges, got = alice.take_bytes("l", 20)
    assert bob.consume_ranges("l", ranges) == got
    assert [b.bits for b in alice.blocks("l")] == [b.bits for b in bob.blocks("l")]
    assert bob.available_bytes("l") == 34


def test_take_bytes_exhausted_takes_nothing(store_factory: Factory) -> None:
    store = store_factory("A")
    store.put("l", blocks(2, size=16))
    with pytest.raises(KeyExhausted, match="has 32 byte"):
        store.take_bytes("l", 33)
    assert store.available_bytes("l") == 32


def test_locate_purge_pools(store_factory: Factory) -> None:
    store = store_factory("A")
    b = blocks(1)[0]
    store.put("x", [b])
    store.put("y", [b])
    assert store.locate(b.key_id) == ["x", "y"]
    assert store.pools() == ["x", "y"]
    assert store.purge("x") == 1
    assert store.locate(b.key_id) == ["y"]


def test_two_connections_never_hand_out_the_same_key(store_factory: Factory) -> None:
    first, second = store_factory("A"), store_factory("A")  # two connections, one database
    first.put("p", blocks(60, size=8))
    got: list[list[uuid.UUID]] = [[], []]

    def grab(store: Any, out: list[uuid.UUID], name: str) -> None:
        for _ in range(30):
            for b in store.reserve("p", 1, holder=name, until=100.0, now=0.0):
                store.consume("p", [b.key_id], holder=name)
                out.append(b.key_id)

    threads = [
        threading.Thread(target=grab, args=(s, got[i], f"h{i}"))
        for i, s in enumerate((first, second))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got[0]) == len(got[1]) == 30
    assert not set(got[0]) & set(got[1])
    assert first.count("p") == 0


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 48), min_size=1, max_size=6),
    takes=st.lists(st.integers(1, 40), min_size=1, max_size=8),
)
def test_take_bytes_is_the_deposited_stream_in_order(sizes: list[int], takes: list[int]) -> None:
    # Property: whatever the block sizes and take sizes, the bytes taken are the deposited
    # stream in order, and what remains is its tail (SQLite; the suite above covers both).
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        store = SQLiteKeyStore(Path(d) / "k.db")
        bs = [KeyBlock(uuid.uuid4(), os.urandom(n), "L", float(i)) for i, n in enumerate(sizes)]
        store.put("l", bs)
        stream = b"".join(b.bits for b in home_first(bs, FRONT))
        taken = b""
        for n in takes:
            if n > len(stream) - len(taken):
                with pytest.raises(KeyExhausted):
                    store.take_bytes("l", n)
                continue
            taken += store.take_bytes("l", n)[1]
        assert taken == stream[: len(taken)]
        left = b"".join(b.bits for b in home_first(store.blocks("l"), FRONT))
        assert left == stream[len(taken) :]
        store.close()


def test_sqlite_erasure_leaves_no_key_bytes_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = SQLiteKeyStore(path)
    secret = os.urandom(64)
    b = KeyBlock(uuid.uuid4(), secret, "L", 0.0)
    store.put("p", [b])
    store.checkpoint()

    def on_disk() -> bytes:
        wal = path.with_name(path.name + "-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

    assert secret in on_disk()  # positive control: the key is really there before
    store.reserve_ids("p", [b.key_id], holder="h", until=1.0, now=0.0)
    store.consume("p", [b.key_id], holder="h")
    store.checkpoint()
    assert secret not in on_disk()
    assert secret[:16] not in on_disk()
    # Link key taken by byte ranges: the bytes taken leave the disk, the rest stays.
    link = KeyBlock(uuid.uuid4(), os.urandom(64), "L", 0.0)
    store.put("l", [link])
    _, taken = store.take_bytes("l", 24)
    store.checkpoint()
    assert taken == link.bits[:24]
    assert taken[:12] not in on_disk() and taken[12:] not in on_disk()
    assert link.bits[24:] in on_disk()
    store.close()
    # The file is a sound SQLite database afterwards.
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_key_range_json_roundtrip() -> None:
    r = KeyRange(uuid.uuid4(), 3, 9)
    assert KeyRange.from_json(r.to_json()) == r
    with pytest.raises(ParameterError):
        KeyRange.from_json(["not-a-uuid", 0, 1])
    with pytest.raises(ParameterError):
        KeyRange(uuid.uuid4(), 5, 5)


@pytest.mark.postgres
def test_postgres_table_prefix_keeps_nodes_apart(postgres_dsn: str) -> None:
    from conftest import fresh_postgres_schema
    from qkdnet.keys import PostgresKeyStore

    dsn = fresh_postgres_schema(postgres_dsn)
    a = PostgresKeyStore(dsn, schema_prefix="node_a_")
    b = PostgresKeyStore(dsn, schema_prefix="node_b_")
    a.put("p", blocks(2))
    b.put("p", blocks(1))
    assert (a.count("p"), b.count("p")) == (2, 1)
    with pytest.raises(ParameterError, match="schema_prefix"):
        PostgresKeyStore(dsn, schema_prefix="x; DROP TABLE")
    a.close()
    b.close()


def test_back_direction_takes_block_ends_and_keeps_ends_in_step(store_factory: Factory) -> None:
    alice, bob = store_factory("A"), store_factory("B")
    bs = blocks(2, size=40, parity=1)  # BACK's home blocks
    alice.put("l", bs)
    bob.put("l", bs)
    ranges, got = bob.take_bytes("l", 50, direction=BACK)
    assert [(r.key_id, r.start, r.end) for r in ranges] == [
        (bs[0].key_id, 0, 40), (bs[1].key_id, 30, 40)
    ]
    assert got == bs[0].bits + bs[1].bits[30:]
    assert alice.read_ranges("l", ranges, direction=BACK) == got
    assert alice.consume_ranges("l", ranges, direction=BACK) == got
    assert [b.bits for b in alice.blocks("l")] == [b.bits for b in bob.blocks("l")]
    assert [b.bits for b in bob.blocks("l")] == [bs[1].bits[:30]]
    with pytest.raises(KeyAlreadyConsumed):
        alice.consume_ranges("l", ranges, direction=BACK)  # a replay
    # A gap in the back direction (the sender crashed after taking [25, 30)) is erased.
    bob.take_bytes("l", 5, direction=BACK)
    ranges, got = bob.take_bytes("l", 5, direction=BACK)
    assert ranges == [KeyRange(bs[1].key_id, 20, 25)]
    assert alice.consume_ranges("l", ranges, direction=BACK) == got
    assert [b.bits for b in alice.blocks("l")] == [bs[1].bits[:20]]
    with pytest.raises(ParameterError):
        alice.take_bytes("l", 1, direction="sideways")


def test_two_directions_share_blocks_without_sharing_bytes(store_factory: Factory) -> None:
    # Both ends send at once, neither has seen the other's message: FRONT from its home
    # blocks, BACK from its own; both messages are accepted; the ends stay in step.
    alice, bob = store_factory("A"), store_factory("B")
    even, odd = blocks(1, size=64, parity=0)[0], blocks(1, size=64, parity=1)[0]
    alice.put("l", [odd, even])  # the odd block is older: home comes before age
    bob.put("l", [odd, even])
    ra, a_bytes = alice.take_bytes("l", 20, direction=FRONT)
    rb, b_bytes = bob.take_bytes("l", 20, direction=BACK)
    assert ra == [KeyRange(even.key_id, 0, 20)] and rb == [KeyRange(odd.key_id, 44, 64)]
    assert bob.consume_ranges("l", ra, direction=FRONT) == a_bytes == even.bits[:20]
    assert alice.consume_ranges("l", rb, direction=BACK) == b_bytes == odd.bits[44:]
    assert alice.available_bytes("l") == bob.available_bytes("l") == 128 - 40
    # A direction alone still has the whole pool: FRONT goes on into BACK's home block
    # from its start, and the two marks meet inside it without a byte lost.
    ra, a_bytes = alice.take_bytes("l", 44 + 44, direction=FRONT)
    assert ra == [KeyRange(even.key_id, 20, 64), KeyRange(odd.key_id, 0, 44)]
    assert bob.consume_ranges("l", ra, direction=FRONT) == a_bytes
    assert alice.available_bytes("l") == bob.available_bytes("l") == 0
    assert alice.is_consumed("l", odd.key_id) and bob.is_consumed("l", odd.key_id)


def test_marks_meeting_refuses_both_messages_and_erases_nothing_unauthenticated(
    store_factory: Factory,
) -> None:
    # One block, both directions in flight over its middle: each message reaches into bytes
    # the receiver already spent the other way, so each is refused; reading (before the MAC
    # is checked) erases nothing, and the next messages each way are accepted.
    alice, bob = store_factory("A"), store_factory("B")
    bs = blocks(1, size=64, parity=0)
    alice.put("l", bs)
    bob.put("l", bs)
    alice.take_bytes("l", 20, direction=FRONT)
    bob.consume_ranges("l", [KeyRange(bs[0].key_id, 0, 20)], direction=FRONT)
    ra, _ = alice.take_bytes("l", 30, direction=FRONT)  # [20, 50)
    rb, _ = bob.take_bytes("l", 30, direction=BACK)  # [14, 44) is not free at bob: [34, 64)
    assert rb == [KeyRange(bs[0].key_id, 34, 64)]
    before = (alice.available_bytes("l"), bob.available_bytes("l"))
    with pytest.raises(KeyAlreadyConsumed, match="other direction"):
        bob.read_ranges("l", ra, direction=FRONT)
    with pytest.raises(KeyAlreadyConsumed, match="other direction"):
        alice.consume_ranges("l", rb, direction=BACK)
    assert (alice.available_bytes("l"), bob.available_bytes("l")) == before == (14, 14)
    ra, a_bytes = alice.take_bytes("l", 14, direction=FRONT)  # [50, 64): the block's rest
    with pytest.raises(KeyAlreadyConsumed):
        bob.consume_ranges("l", ra, direction=FRONT)  # bob spent [34, 64) already
    assert alice.is_consumed("l", bs[0].key_id)
    with pytest.raises(KeyExhausted):
        alice.take_bytes("l", 1, direction=FRONT)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 40), st.integers(0, 1)), min_size=1, max_size=5),
    ops=st.lists(
        st.one_of(
            st.tuples(st.sampled_from([FRONT, BACK]), st.integers(1, 24)),
            st.tuples(st.sampled_from(["deliver_front", "deliver_back"]), st.just(0)),
        ),
        max_size=14,
    ),
)
def test_opposite_directions_never_accept_a_byte_twice(
    sizes: list[tuple[int, int]], ops: list[tuple[str, int]]
) -> None:
    # Property: alice sends FRONT, bob BACK, each message delivered in order per direction
    # but at any later moment. Every accepted message has the same bytes at both ends; no
    # byte is accepted in both directions; a message is refused only if the other
    # direction took one of its bytes; with nothing refused, the ends end in step.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ends = {FRONT: SQLiteKeyStore(Path(d) / "a.db"), BACK: SQLiteKeyStore(Path(d) / "b.db")}
        bs = [
            KeyBlock(block_id(p), os.urandom(n), "L", float(i)) for i, (n, p) in enumerate(sizes)
        ]
        bits = {b.key_id: b.bits for b in bs}
        for store in ends.values():
            store.put("l", bs)
        pending: dict[str, list[tuple[list[KeyRange], bytes]]] = {FRONT: [], BACK: []}
        taken: dict[str, set[tuple[uuid.UUID, int]]] = {FRONT: set(), BACK: set()}
        accepted: dict[str, set[tuple[uuid.UUID, int]]] = {FRONT: set(), BACK: set()}
        refused = 0

        def offsets(ranges: list[KeyRange]) -> set[tuple[uuid.UUID, int]]:
            return {(r.key_id, i) for r in ranges for i in range(r.start, r.end)}

        def deliver(direction: str) -> None:
            nonlocal refused
            ranges, sent = pending[direction].pop(0)
            other = BACK if direction == FRONT else FRONT
            try:
                got = ends[other].consume_ranges("l", ranges, direction=direction)
            except KeyAlreadyConsumed:
                refused += 1
                assert offsets(ranges) & taken[other]  # refused only for a true overlap
                return
            assert got == sent == b"".join(bits[r.key_id][r.start : r.end] for r in ranges)
            accepted[direction] |= offsets(ranges)

        for op, n in ops:
            if op in (FRONT, BACK):
                try:
                    ranges, sent = ends[op].take_bytes("l", n, direction=op)
                except KeyExhausted:
                    continue
                assert not offsets(ranges) & taken[op]  # a direction never repeats a byte
                taken[op] |= offsets(ranges)
                pending[op].append((ranges, sent))
            elif pending[op.removeprefix("deliver_")]:
                deliver(op.removeprefix("deliver_"))
        for direction in (FRONT, BACK):
            while pending[direction]:
                deliver(direction)
        assert not accepted[FRONT] & accepted[BACK]
        if not refused:
            assert [(b.key_id, b.bits) for b in ends[FRONT].blocks("l")] == [
                (b.key_id, b.bits) for b in ends[BACK].blocks("l")
            ]
        for store in ends.values():
            store.close()


def test_store_from_before_the_back_direction_gains_its_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the schema as released before used_back
        conn.execute(
            "CREATE TABLE qk_keys (seq INTEGER PRIMARY KEY AUTOINCREMENT, pool TEXT NOT NULL, "
            "key_id TEXT NOT NULL, bits BLOB NOT NULL, link TEXT NOT NULL, "
            "created DOUBLE PRECISION NOT NULL, epsilon DOUBLE PRECISION NOT NULL, "
            "used INTEGER NOT NULL DEFAULT 0, holder TEXT, reserved_until DOUBLE PRECISION, "
            "UNIQUE (pool, key_id))"
        )
        kid, raw = block_id(0), os.urandom(32)
        conn.execute(
            "INSERT INTO qk_keys (pool, key_id, bits, link, created, epsilon, used) "
            "VALUES ('l', ?, ?, 'L', 0, 1e-10, 8)",
            (str(kid), raw),
        )
    store = SQLiteKeyStore(path)
    assert store.available_bytes("l") == 24
    ranges, got = store.take_bytes("l", 4, direction=BACK)
    assert ranges == [KeyRange(kid, 28, 32)] and got == raw[28:]
    assert [b.bits for b in store.blocks("l")] == [raw[8:28]]
    store.close()
