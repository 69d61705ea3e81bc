"""Key blocks and key stores: pools of key with IDs, reserved, consumed and erased atomically.

A store holds *pools* (named by the key manager: one per QKD link, one per SAE pair, ...).
Every block has a UUID that means the same bits at both ends of its link or pair.

Two ways of taking key out of a pool, both atomic (one database transaction each):

* whole blocks: :meth:`reserve` (or :meth:`reserve_ids`) marks blocks as held by a holder
  until a deadline; :meth:`consume` erases them (overwrite with zeros, then delete) and
  leaves a tombstone so that the ID can never be stored or delivered again;
  :meth:`release` gives them back; an expired reservation is free again.
* byte ranges of link key (for one-time pads and MAC keys of relay, Y.3803): the sender
  calls :meth:`take_bytes`, which erases the oldest bytes and returns them with their
  :class:`KeyRange` s; the receiver names the same ranges to :meth:`read_ranges` (to check
  the MAC first) and :meth:`consume_ranges`. Each link has two *directions*, one per
  sending end: the ``front`` direction takes every block from its first byte upwards, the
  ``back`` direction from its last byte downwards, so the two ends of a link never take
  the same bytes while their marks are apart. A block remembers how many leading bytes
  (``used``) and trailing bytes (``used_back``) are used (erased); in each direction
  ranges must come in order, and a receiver that sees a range beyond its own mark for
  that direction erases the gap (the sender crashed after taking it), which keeps both
  ends in step and refuses replays. A block is erased once the two marks meet.

Backends: :class:`SQLiteKeyStore` (here; WAL, ``secure_delete``) and
:class:`qkdnet.keys.postgres.PostgresKeyStore` (psycopg 3). Both share this SQL.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from qkdnet.errors import (
    KeyAlreadyConsumed,
    KeyExhausted,
    KeyNotFound,
    ParameterError,
    StoreError,
)

#: The two directions of a link's byte ranges (see the module docstring).
FRONT, BACK = "front", "back"
#: Last hex digits of the key IDs of FRONT's home blocks (see take_bytes).
_EVEN = "('0', '2', '4', '6', '8', 'a', 'c', 'e')"


@dataclass(frozen=True)
class KeyBlock:
    """A block of secret key with its ID (DESIGN.md).

    ``bits`` are the key bytes (8 bits per byte), ``link`` the link (or pair) it came from,
    ``created`` the clock time in seconds, ``epsilon`` the security parameter of the block
    (composable ε of the QKD security proof that produced it).
    """

    key_id: uuid.UUID
    bits: bytes
    link: str
    created: float
    epsilon: float = 1e-10

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, uuid.UUID):
            raise ParameterError("key_id", f"must be a uuid.UUID, got {type(self.key_id).__name__}")
        if not isinstance(self.bits, bytes) or len(self.bits) == 0:
            raise ParameterError("bits", "must be non-empty bytes")
        if not (0.0 <= self.epsilon <= 1.0):
            raise ParameterError("epsilon", f"must be in [0, 1], got {self.epsilon!r}")

    @property
    def size_bits(self) -> int:
        """Length of the key, bits."""
        return 8 * len(self.bits)

    def __repr__(self) -> str:  # never print secret bits
        return (
            f"KeyBlock(key_id={self.key_id}, size_bits={self.size_bits}, link={self.link!r}, "
            f"created={self.created})"
        )


@dataclass(frozen=True)
class KeyRange:
    """Bytes ``[start, end)`` of the link-key block ``key_id`` (the same bytes at both ends)."""

    key_id: uuid.UUID
    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.end):
            raise ParameterError("range", f"need 0 <= start < end, got [{self.start}, {self.end})")

    @property
    def size_bytes(self) -> int:
        """Length of the range, bytes."""
        return self.end - self.start

    def to_json(self) -> list[Any]:
        """``[key_id, start, end]`` for Kx messages."""
        return [str(self.key_id), self.start, self.end]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> KeyRange:
        """Inverse of :meth:`to_json`; raises ParameterError on a malformed value."""
        try:
            key_id, start, end = value
            return cls(uuid.UUID(str(key_id)), int(start), int(end))
        except (TypeError, ValueError) as exc:
            raise ParameterError("ranges", f"malformed key range {value!r}") from exc


@runtime_checkable
class KeyStore(Protocol):
    """What every store offers (SQLiteKeyStore(path), PostgresKeyStore(dsn)); all atomic."""

    def put(self, pool: str, blocks: Sequence[KeyBlock]) -> int:
        """Store blocks atomically; an identical retry is a no-op; returns how many are new."""
        ...

    def count(self, pool: str, now: float | None = None) -> int:
        """Blocks free to reserve at ``now`` (seconds; None: all blocks)."""
        ...

    def available_bytes(self, pool: str, now: float | None = None) -> int:
        """Unused key bytes in the pool."""
        ...

    def reserve(
        self, pool: str, number: int, *, holder: str, until: float, now: float
    ) -> list[KeyBlock]:
        """Reserve the ``number`` oldest free blocks until ``until`` seconds (KeyExhausted)."""
        ...

    def reserve_ids(
        self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str, until: float, now: float
    ) -> list[KeyBlock]:
        """Reserve exactly these IDs, all or nothing (KeyNotFound, KeyAlreadyConsumed)."""
        ...

    def consume(self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str) -> None:
        """Erase reserved blocks for good (overwrite, delete, tombstone), all or nothing."""
        ...

    def release(self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str) -> None:
        """Give reserved blocks back."""
        ...

    def take(self, pool: str, key_ids: Sequence[uuid.UUID]) -> list[KeyBlock]:
        """Return and erase these IDs in one transaction."""
        ...

    def take_bytes(
        self, pool: str, size_bytes: int, now: float | None = None, *, direction: str = FRONT
    ) -> tuple[list[KeyRange], bytes]:
        """Take and erase ``size_bytes`` unused bytes for ``direction`` (FRONT or BACK):
        oldest blocks first, from each block's start (FRONT) or end (BACK)."""
        ...

    def read_ranges(
        self, pool: str, ranges: Sequence[KeyRange], *, direction: str = FRONT
    ) -> bytes:
        """The bytes of ranges a peer took in ``direction``, consuming nothing."""
        ...

    def consume_ranges(
        self, pool: str, ranges: Sequence[KeyRange], *, direction: str = FRONT
    ) -> bytes:
        """Consume ranges a peer took in ``direction`` (erasing any gap before them)."""
        ...

    def is_consumed(self, pool: str, key_id: uuid.UUID) -> bool:
        """Whether the ID was consumed (tombstoned)."""
        ...

    def locate(self, key_id: uuid.UUID) -> list[str]:
        """Pools holding the ID now."""
        ...

    def pools(self) -> list[str]:
        """Pools holding at least one block."""
        ...

    def blocks(self, pool: str) -> list[KeyBlock]:
        """Every block of the pool, oldest first (audits and tests)."""
        ...

    def purge(self, pool: str) -> int:
        """Erase every block of the pool; returns how many."""
        ...

    def close(self) -> None:
        """Release the backend connection."""
        ...


_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS qk_keys (
        seq {serial},
        pool TEXT NOT NULL,
        key_id TEXT NOT NULL,
        bits {blob} NOT NULL,
        link TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        epsilon DOUBLE PRECISION NOT NULL,
        used INTEGER NOT NULL DEFAULT 0,
        used_back INTEGER NOT NULL DEFAULT 0,
        holder TEXT,
        reserved_until DOUBLE PRECISION,
        UNIQUE (pool, key_id))""",
    "CREATE INDEX IF NOT EXISTS qk_keys_pool_seq ON qk_keys (pool, seq)",
    "CREATE INDEX IF NOT EXISTS qk_keys_key_id ON qk_keys (key_id)",
    """CREATE TABLE IF NOT EXISTS qk_consumed (
        pool TEXT NOT NULL,
        key_id TEXT NOT NULL,
        PRIMARY KEY (pool, key_id))""",
]

#: Added after the first release: stores created before it gain the column on open.
_MIGRATE_USED_BACK = "ALTER TABLE qk_keys ADD COLUMN used_back INTEGER NOT NULL DEFAULT 0"

_COLS = "key_id, bits, link, created, epsilon, used, used_back"

def _block(row: Sequence[Any]) -> KeyBlock:
    key_id, bits, link, created, epsilon, used, used_back = row
    raw = bytes(bits)
    return KeyBlock(
        uuid.UUID(key_id), raw[used : len(raw) - used_back], link, float(created), float(epsilon)
    )


def _check_direction(direction: str) -> bool:
    """True for the back direction; ParameterError for anything but FRONT or BACK."""
    if direction not in (FRONT, BACK):
        raise ParameterError("direction", f"must be {FRONT!r} or {BACK!r}, got {direction!r}")
    return direction == BACK


def _check_pool(pool: str) -> None:
    if not isinstance(pool, str) or not pool:
        raise ParameterError("pool", "must be a non-empty string")


def _check_number(number: int) -> None:
    if not isinstance(number, int) or number < 1:
        raise ParameterError("number", f"must be an integer >= 1, got {number!r}")


class _SqlKeyStore:
    """The store logic in portable SQL; subclasses give the connection and transactions."""

    _placeholder = "?"
    _prefix = ""  # table-name prefix: several nodes may share one database

    # -- backend hooks --------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self, pool: str | None = None) -> Iterator[Any]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield

    def _q(self, sql: str) -> str:
        if self._prefix:
            sql = sql.replace("qk_", f"{self._prefix}qk_")
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def _exec(self, cur: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._q(sql), tuple(params))
        return cur

    # -- helpers (inside a transaction) ---------------------------------------------------
    def _tombstoned(self, cur: Any, pool: str, key_id: str) -> bool:
        self._exec(cur, "SELECT 1 FROM qk_consumed WHERE pool = ? AND key_id = ?", (pool, key_id))
        return cur.fetchone() is not None

    def _erase(self, cur: Any, pool: str, key_id: str, length: int) -> None:
        # Overwrite, then delete, then remember the ID so it is never stored or handed out again.
        self._exec(
            cur,
            "UPDATE qk_keys SET bits = ? WHERE pool = ? AND key_id = ?",
            (bytes(length), pool, key_id),
        )
        self._exec(cur, "DELETE FROM qk_keys WHERE pool = ? AND key_id = ?", (pool, key_id))
        self._exec(cur, "INSERT INTO qk_consumed (pool, key_id) VALUES (?, ?)", (pool, key_id))

    def _missing(self, cur: Any, pool: str, key_id: str) -> KeyNotFound:
        if self._tombstoned(cur, pool, key_id):
            return KeyAlreadyConsumed(f"key {key_id} of pool {pool!r} was already consumed")
        return KeyNotFound(f"key {key_id} is not in pool {pool!r}")

    # -- whole blocks ---------------------------------------------------------------------
    def put(self, pool: str, blocks: Sequence[KeyBlock]) -> int:
        """Store ``blocks`` in ``pool`` atomically; returns how many were new.

        Storing a block again with the same bits is a no-op (so a retried deposit is safe);
        with different bits it raises ParameterError and stores nothing; an ID that was
        already consumed raises KeyAlreadyConsumed and stores nothing.
        """
        _check_pool(pool)
        batch: dict[str, KeyBlock] = {}
        for block in blocks:
            kid = str(block.key_id)
            if kid in batch and batch[kid].bits != block.bits:
                raise ParameterError("key_id", f"{kid} appears twice with other bits")
            batch[kid] = block
        new = 0
        with self._tx(pool) as cur:
            ids = list(batch)
            # A few set-wise queries instead of three statements per block.
            for i in range(0, len(ids), 400):
                chunk = ids[i : i + 400]
                marks = ", ".join("?" * len(chunk))
                self._exec(
                    cur,
                    f"SELECT key_id FROM qk_consumed WHERE pool = ? AND key_id IN ({marks})",
                    (pool, *chunk),
                )
                gone = cur.fetchone()
                if gone is not None:
                    raise KeyAlreadyConsumed(
                        f"key {gone[0]} of pool {pool!r} was already consumed"
                    )
                self._exec(
                    cur,
                    "SELECT key_id, bits, used, used_back FROM qk_keys "
                    f"WHERE pool = ? AND key_id IN ({marks})",
                    (pool, *chunk),
                )
                for kid, bits, used, back in cur.fetchall():
                    old, fresh = bytes(bits), batch.pop(kid).bits
                    live = slice(used, len(old) - back)  # the bytes not yet erased
                    if len(old) != len(fresh) or old[live] != fresh[live]:
                        raise ParameterError("key_id", f"{kid} is already stored with other bits")
            rows = [
                (pool, kid, b.bits, b.link, b.created, b.epsilon) for kid, b in batch.items()
            ]
            if rows:
                cur.executemany(
                    self._q(
                        "INSERT INTO qk_keys (pool, key_id, bits, link, created, epsilon) "
                        "VALUES (?, ?, ?, ?, ?, ?)"
                    ),
                    rows,
                )
            new = len(rows)
        return new

    def count(self, pool: str, now: float | None = None) -> int:
        """Number of blocks in ``pool`` free to reserve at time ``now`` (seconds)."""
        with self._tx() as cur:
            if now is None:
                self._exec(cur, "SELECT COUNT(*) FROM qk_keys WHERE pool = ?", (pool,))
            else:
                self._exec(
                    cur,
                    "SELECT COUNT(*) FROM qk_keys WHERE pool = ? "
                    "AND (holder IS NULL OR reserved_until <= ?)",
                    (pool, now),
                )
            return int(cur.fetchone()[0])

    def available_bytes(self, pool: str, now: float | None = None) -> int:
        """Unused key bytes in ``pool`` free at time ``now`` (all blocks if ``now`` is None)."""
        with self._tx() as cur:
            sql = (
                "SELECT COALESCE(SUM(LENGTH(bits) - used - used_back), 0) FROM qk_keys "
                "WHERE pool = ?"
            )
            params: tuple[Any, ...] = (pool,)
            if now is not None:
                sql += " AND (holder IS NULL OR reserved_until <= ?)"
                params = (pool, now)
            self._exec(cur, sql, params)
            return int(cur.fetchone()[0])

    def reserve(
        self, pool: str, number: int, *, holder: str, until: float, now: float
    ) -> list[KeyBlock]:
        """Reserve the ``number`` oldest free blocks of ``pool`` for ``holder`` until ``until`` s.

        All or nothing: raises KeyExhausted (and reserves nothing) if fewer are free.
        """
        _check_pool(pool)
        _check_number(number)
        with self._tx(pool) as cur:
            self._exec(
                cur,
                f"SELECT {_COLS} FROM qk_keys WHERE pool = ? "
                "AND (holder IS NULL OR reserved_until <= ?) ORDER BY seq LIMIT ?",
                (pool, now, number),
            )
            rows = cur.fetchall()
            if len(rows) < number:
                raise KeyExhausted(
                    f"pool {pool!r} has {len(rows)} free key(s), the request needs {number}"
                )
            for row in rows:
                self._exec(
                    cur,
                    "UPDATE qk_keys SET holder = ?, reserved_until = ? "
                    "WHERE pool = ? AND key_id = ?",
                    (holder, until, pool, row[0]),
                )
            return [_block(r) for r in rows]

    def reserve_ids(
        self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str, until: float, now: float
    ) -> list[KeyBlock]:
        """Reserve exactly ``key_ids`` (in that order) for ``holder``; all or nothing.

        Raises KeyAlreadyConsumed for a consumed ID, KeyNotFound for an unknown one or one
        held by another holder whose reservation has not expired.
        """
        _check_pool(pool)
        if len(set(key_ids)) != len(key_ids):
            raise ParameterError("key_ids", "the same key ID is listed twice")
        ids = [str(k) for k in key_ids]
        with self._tx(pool) as cur:
            rows = self._rows_by_id(cur, pool, ids, f"{_COLS}, holder, reserved_until")
            for kid in ids:
                row = rows.get(kid)
                if row is None:
                    raise self._missing(cur, pool, kid)
                if row[7] is not None and row[7] != holder and row[8] > now:
                    raise KeyNotFound(f"key {kid} is reserved by another request")
            cur.executemany(
                self._q(
                    "UPDATE qk_keys SET holder = ?, reserved_until = ? "
                    "WHERE pool = ? AND key_id = ?"
                ),
                [(holder, until, pool, kid) for kid in ids],
            )
            return [_block(rows[kid][:7]) for kid in ids]

    def _rows_by_id(
        self, cur: Any, pool: str, ids: Sequence[str], cols: str
    ) -> dict[str, Sequence[Any]]:
        """Rows of ``ids`` in ``pool`` keyed by ID (first column must be key_id)."""
        rows: dict[str, Sequence[Any]] = {}
        for i in range(0, len(ids), 400):
            chunk = ids[i : i + 400]
            marks = ", ".join("?" * len(chunk))
            self._exec(
                cur,
                f"SELECT {cols} FROM qk_keys WHERE pool = ? AND key_id IN ({marks})",
                (pool, *chunk),
            )
            rows.update((r[0], r) for r in cur.fetchall())
        return rows

    def _erase_many(self, cur: Any, pool: str, items: Sequence[tuple[str, int]]) -> None:
        # Overwrite, then delete, then tombstone — set-wise (see _erase).
        cur.executemany(
            self._q("UPDATE qk_keys SET bits = ? WHERE pool = ? AND key_id = ?"),
            [(bytes(length), pool, kid) for kid, length in items],
        )
        cur.executemany(
            self._q("DELETE FROM qk_keys WHERE pool = ? AND key_id = ?"),
            [(pool, kid) for kid, _ in items],
        )
        cur.executemany(
            self._q("INSERT INTO qk_consumed (pool, key_id) VALUES (?, ?)"),
            [(pool, kid) for kid, _ in items],
        )

    def consume(self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str) -> None:
        """Erase reserved blocks for good (overwrite, delete, tombstone); all or nothing.

        Every ID must be reserved by ``holder`` (KeyNotFound / KeyAlreadyConsumed otherwise).
        """
        ids = list(dict.fromkeys(str(k) for k in key_ids))
        with self._tx(pool) as cur:
            rows = self._rows_by_id(cur, pool, ids, "key_id, holder, LENGTH(bits)")
            for kid in ids:
                row = rows.get(kid)
                if row is None:
                    raise self._missing(cur, pool, kid)
                if row[1] != holder:
                    raise KeyNotFound(f"key {kid} is not reserved by {holder!r}")
            self._erase_many(cur, pool, [(kid, int(rows[kid][2])) for kid in ids])

    def release(self, pool: str, key_ids: Sequence[uuid.UUID], *, holder: str) -> None:
        """Give reserved blocks back to the pool (those not held by ``holder`` are left alone)."""
        with self._tx(pool) as cur:
            for key_id in key_ids:
                self._exec(
                    cur,
                    "UPDATE qk_keys SET holder = NULL, reserved_until = NULL "
                    "WHERE pool = ? AND key_id = ? AND holder = ?",
                    (pool, str(key_id), holder),
                )

    def take(self, pool: str, key_ids: Sequence[uuid.UUID]) -> list[KeyBlock]:
        """Return and erase ``key_ids`` in one transaction, reserved or not; all or nothing."""
        out = []
        with self._tx(pool) as cur:
            for key_id in key_ids:
                kid = str(key_id)
                self._exec(
                    cur, f"SELECT {_COLS} FROM qk_keys WHERE pool = ? AND key_id = ?", (pool, kid)
                )
                row = cur.fetchone()
                if row is None:
                    raise self._missing(cur, pool, kid)
                out.append(_block(row))
                self._erase(cur, pool, kid, len(row[1]))
        return out

    # -- byte ranges of link key ----------------------------------------------------------
    def take_bytes(
        self, pool: str, size_bytes: int, now: float | None = None, *, direction: str = FRONT
    ) -> tuple[list[KeyRange], bytes]:
        """Take (and erase) ``size_bytes`` unused bytes of ``pool`` for one sending direction.

        Within a block, ``FRONT`` takes the lowest unused bytes (ranges ascend), ``BACK``
        the highest (ranges descend from the block's end), so the two ends of a link, one
        per direction, never take the same bytes while their marks in a block are apart.
        Each direction first uses its *home* blocks (by the parity of the key ID's last hex
        digit: even for FRONT, odd for BACK), oldest first, and only then the other
        direction's, oldest first: while both directions have home blocks left, their marks
        never meet, and a direction alone still has the whole pool. Returns the ranges (to
        name in a Kx message) and the bytes (the ranges' bytes in that order). Blocks under
        a live reservation are skipped. All or nothing: raises KeyExhausted if the pool is
        short. Only the bytes taken are read and overwritten, so large blocks cost nothing
        extra.
        """
        _check_pool(pool)
        _check_number(size_bytes)
        back = _check_direction(direction)
        ranges: list[KeyRange] = []
        chunks: list[bytes] = []
        with self._tx(pool) as cur:
            sql = "SELECT key_id, LENGTH(bits), used, used_back FROM qk_keys WHERE pool = ?"
            params: tuple[Any, ...] = (pool,)
            if now is not None:
                sql += " AND (holder IS NULL OR reserved_until <= ?)"
                params = (pool, now)
            need = size_bytes
            plan = []
            # Home blocks first, then the other direction's (key IDs are stored as
            # canonical lower-case UUID text, 36 characters).
            for home in (True, False):
                parity = "IN" if home != back else "NOT IN"
                self._exec(
                    cur, f"{sql} AND SUBSTR(key_id, 36, 1) {parity} {_EVEN} ORDER BY seq", params
                )
                while need > 0:
                    row = cur.fetchone()
                    if row is None:
                        break
                    length, used, used_back = int(row[1]), int(row[2]), int(row[3])
                    n = min(need, length - used - used_back)
                    if n > 0:
                        plan.append((row[0], length, used, used_back, n))
                        need -= n
                if need == 0:
                    break
            if need > 0:  # every row was read: the pool holds size_bytes - need bytes
                raise KeyExhausted(
                    f"pool {pool!r} has {size_bytes - need} byte(s) of key, "
                    f"the request needs {size_bytes}"
                )
            for kid, length, used, used_back, n in plan:
                if back:
                    hi = length - used_back
                    ranges.append(KeyRange(uuid.UUID(kid), hi - n, hi))
                    chunks.append(self._slice(cur, pool, kid, hi - n, n))
                    self._advance(cur, pool, kid, length, (used, used_back), (used, used_back + n))
                else:
                    ranges.append(KeyRange(uuid.UUID(kid), used, used + n))
                    chunks.append(self._slice(cur, pool, kid, used, n))
                    self._advance(cur, pool, kid, length, (used, used_back), (used + n, used_back))
        return ranges, b"".join(chunks)

    def _slice(self, cur: Any, pool: str, kid: str, start: int, n: int) -> bytes:
        self._exec(
            cur,
            "SELECT SUBSTR(bits, ?, ?) FROM qk_keys WHERE pool = ? AND key_id = ?",
            (start + 1, n, pool, kid),
        )
        return bytes(cur.fetchone()[0])

    def _zero(self, cur: Any, pool: str, kid: str, start: int, n: int) -> None:
        """Overwrite bytes ``[start, start + n)`` of a block with zeros (backend-specific)."""
        raise NotImplementedError

    def _advance(
        self, cur: Any, pool: str, kid: str, length: int,
        marks: tuple[int, int], new_marks: tuple[int, int],
    ) -> None:
        # Erase the bytes between the old and new (front, back) marks; a block whose marks
        # meet is deleted and tombstoned.
        (used, used_back), (new_used, new_back) = marks, new_marks
        if new_used + new_back >= length:
            self._erase(cur, pool, kid, length)
            return
        if new_used > used:
            self._zero(cur, pool, kid, used, new_used - used)
        if new_back > used_back:
            self._zero(cur, pool, kid, length - new_back, new_back - used_back)
        if (new_used, new_back) != (used, used_back):
            self._exec(
                cur,
                "UPDATE qk_keys SET used = ?, used_back = ? WHERE pool = ? AND key_id = ?",
                (new_used, new_back, pool, kid),
            )

    def _ranges(
        self, cur: Any, pool: str, ranges: Sequence[KeyRange], back: bool
    ) -> tuple[bytes, dict[str, tuple[int, tuple[int, int], tuple[int, int]]]]:
        """Check ``ranges`` of one direction against the blocks; their bytes and, per block,
        (length, (used, used_back) now, (used, used_back) after consuming them)."""
        blocks: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {}
        chunks = []
        for rng in ranges:
            kid = str(rng.key_id)
            if kid not in blocks:
                self._exec(
                    cur,
                    "SELECT LENGTH(bits), used, used_back FROM qk_keys "
                    "WHERE pool = ? AND key_id = ?",
                    (pool, kid),
                )
                row = cur.fetchone()
                if row is None:
                    raise self._missing(cur, pool, kid)
                marks = (int(row[1]), int(row[2]))
                blocks[kid] = (int(row[0]), marks, marks)
            length, marks, (lo, hi_used) = blocks[kid]
            hi = length - hi_used  # the unused bytes are [lo, hi)
            if rng.end > length:
                raise KeyNotFound(f"key {kid} has only {length} bytes, range ends at {rng.end}")
            # Below (front) or above (back) this direction's own mark: a replay. Past the
            # other direction's mark: both ends took these bytes (their marks met in this
            # block); refused, and not erased here since the message is not yet
            # authenticated — the bytes go when either end's marks pass them.
            own_ok = rng.end <= hi if back else rng.start >= lo
            if not own_ok:
                raise KeyAlreadyConsumed(f"bytes {rng.start}..{rng.end} of key {kid} already used")
            if (rng.start < lo) if back else (rng.end > hi):
                raise KeyAlreadyConsumed(
                    f"bytes {rng.start}..{rng.end} of key {kid} were used by the other direction"
                )
            after = (lo, length - rng.start) if back else (rng.end, hi_used)
            blocks[kid] = (length, marks, after)
            chunks.append(self._slice(cur, pool, kid, rng.start, rng.size_bytes))
        return b"".join(chunks), blocks

    def read_ranges(
        self, pool: str, ranges: Sequence[KeyRange], *, direction: str = FRONT
    ) -> bytes:
        """The bytes of ``ranges`` (sent in ``direction``) without consuming them (to verify
        a MAC first).

        Raises KeyAlreadyConsumed for a range behind the block's mark for that direction
        (a replay) or reaching into the bytes the other direction used, KeyNotFound for an
        unknown block.
        """
        back = _check_direction(direction)
        with self._tx() as cur:
            return self._ranges(cur, pool, ranges, back)[0]

    def consume_ranges(
        self, pool: str, ranges: Sequence[KeyRange], *, direction: str = FRONT
    ) -> bytes:
        """Consume ``ranges`` (named by the sender, taken in ``direction``) and return their
        bytes; all or nothing.

        Bytes a block skips before a range (in that direction's order) are erased too: the
        sender took them and crashed before its message left, so they are gone at its end
        already.
        """
        back = _check_direction(direction)
        with self._tx(pool) as cur:
            out, blocks = self._ranges(cur, pool, ranges, back)
            for kid, (length, marks, after) in blocks.items():
                self._advance(cur, pool, kid, length, marks, after)
        return out

    # -- inspection -----------------------------------------------------------------------
    def is_consumed(self, pool: str, key_id: uuid.UUID) -> bool:
        """Whether ``key_id`` of ``pool`` was consumed (its tombstone exists)."""
        with self._tx() as cur:
            return self._tombstoned(cur, pool, str(key_id))

    def locate(self, key_id: uuid.UUID) -> list[str]:
        """The pools that hold ``key_id`` now."""
        with self._tx() as cur:
            sql = "SELECT pool FROM qk_keys WHERE key_id = ? ORDER BY pool"
            self._exec(cur, sql, (str(key_id),))
            return [r[0] for r in cur.fetchall()]

    def pools(self) -> list[str]:
        """Names of the pools that hold at least one block."""
        with self._tx() as cur:
            self._exec(cur, "SELECT DISTINCT pool FROM qk_keys ORDER BY pool")
            return [r[0] for r in cur.fetchall()]

    def blocks(self, pool: str) -> list[KeyBlock]:
        """Every block of ``pool`` (unused bytes only), oldest first, reserved or not.

        For audits and tests; it hands nothing out and changes nothing.
        """
        with self._tx() as cur:
            self._exec(cur, f"SELECT {_COLS} FROM qk_keys WHERE pool = ? ORDER BY seq", (pool,))
            return [_block(r) for r in cur.fetchall()]

    def purge(self, pool: str) -> int:
        """Erase every block of ``pool`` (e.g. an abandoned staging pool); returns how many."""
        with self._tx(pool) as cur:
            self._exec(cur, "SELECT key_id, LENGTH(bits) FROM qk_keys WHERE pool = ?", (pool,))
            rows = cur.fetchall()
            for kid, length in rows:
                self._erase(cur, pool, kid, int(length))
            return len(rows)


class SQLiteKeyStore(_SqlKeyStore):
    """The embedded default: one SQLite file per node, WAL journal, ``secure_delete`` on.

    ``secure_delete`` makes SQLite overwrite deleted content with zeros; WAL lets readers
    (audits, the dashboard) run beside the writer. Safe for several threads (one
    connection behind a lock) and several processes (``BEGIN IMMEDIATE``, busy timeout).
    ``synchronous="FULL"`` (default): a commit survives power loss, so an acknowledged key
    is on disk. ``"NORMAL"`` still survives a process crash (WAL) but may lose the last
    commits on power loss — enough for simulation; ``path=":memory:"`` keeps nothing.
    """

    def __init__(
        self, path: str | Path, *, timeout_s: float = 30.0, synchronous: str = "FULL"
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ParameterError("synchronous", f"FULL, NORMAL or OFF, got {synchronous!r}")
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous}")
            self._conn.execute("PRAGMA secure_delete=ON")
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._conn.execute("BEGIN IMMEDIATE")  # one schema creator/migrator at a time
            for stmt in _SCHEMA:
                self._conn.execute(
                    stmt.format(serial="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB")
                )
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(qk_keys)")}
            if "used_back" not in cols:
                self._conn.execute(_MIGRATE_USED_BACK)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open key store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self, pool: str | None = None) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            try:
                # IMMEDIATE takes the write lock at once: no two writers interleave.
                cur.execute("BEGIN IMMEDIATE" if pool is not None else "BEGIN")
            except sqlite3.Error as exc:
                raise StoreError(f"key store {self.path}: {exc}") from exc
            try:
                yield cur
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    cur.execute("ROLLBACK")
                raise
            else:
                try:
                    cur.execute("COMMIT")
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        cur.execute("ROLLBACK")
                    raise StoreError(f"key store {self.path}: {exc}") from exc
            finally:
                cur.close()

    def _zero(self, cur: Any, pool: str, kid: str, start: int, n: int) -> None:
        # In place through SQLite's incremental blob I/O: no copy of the rest of the block.
        cur.execute("SELECT seq FROM qk_keys WHERE pool = ? AND key_id = ?", (pool, kid))
        with self._conn.blobopen("qk_keys", "bits", cur.fetchone()[0]) as blob:
            blob.seek(start)
            blob.write(bytes(n))

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and truncate it to zero bytes.

        Until a checkpoint, the write-ahead log still holds page images written before an
        erasure; call this after consuming keys when the bytes must leave the disk now
        (SQLite also checkpoints on its own every 1000 pages).
        """
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise StoreError(f"key store {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteKeyStore({str(self.path)!r})"


def bits_to_bytes(size_bits: int) -> int:
    """Bytes holding ``size_bits`` bits (``size_bits`` must be a multiple of 8, ETSI 014)."""
    if size_bits % 8 or size_bits <= 0:
        raise ParameterError("size", "size shall be a multiple of 8")
    return size_bits // 8


