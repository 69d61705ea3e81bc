"""PostgreSQL key store (psycopg 3): the production backend, same logic as SQLite."""

from __future__ import annotations

import contextlib
import re
import threading
import zlib
from collections.abc import Iterator
from typing import Any

from qkdnet.errors import ParameterError, StoreError
from qkdnet.keys.store import _MIGRATE_USED_BACK, _SCHEMA, _SqlKeyStore


class PostgresKeyStore(_SqlKeyStore):
    """Keys in PostgreSQL: ``PostgresKeyStore("host=127.0.0.1 port=5432 dbname=qkd user=...")``.

    ``schema_prefix`` (e.g. ``"node_a_"``) prefixes the table names, so several nodes can
    keep their stores apart in one database.

    Every write transaction first takes a transaction-scoped advisory lock for its pool
    (``pg_advisory_xact_lock``), so concurrent writers of one pool run one after another
    and reads see committed data (READ COMMITTED). Erasure overwrites, then deletes; note
    that PostgreSQL keeps dead tuple versions until VACUUM, so run VACUUM (autovacuum
    does) to remove the old bytes from the heap — a limit of MVCC storage.
    """

    _placeholder = "%s"

    def __init__(self, dsn: str, *, schema_prefix: str = "") -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - optional extra
            raise StoreError(
                "PostgresKeyStore needs psycopg: pip install 'qkdnet[postgres]'"
            ) from exc
        if schema_prefix and not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", schema_prefix):
            raise ParameterError(
                "schema_prefix", f"lower-case letters, digits and _ only, got {schema_prefix!r}"
            )
        self._prefix = schema_prefix
        self._psycopg = psycopg
        self.dsn = dsn
        self._lock = threading.RLock()
        try:
            self._conn = psycopg.connect(dsn, autocommit=True)
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(7170071)")  # one schema creator at a time
                for stmt in _SCHEMA:
                    cur.execute(self._q(stmt.format(serial="BIGSERIAL PRIMARY KEY", blob="BYTEA")))
                # Stores created before the back direction existed gain its column.
                migrate = _MIGRATE_USED_BACK.replace("ADD COLUMN", "ADD COLUMN IF NOT EXISTS")
                cur.execute(self._q(migrate))
        except psycopg.Error as exc:
            raise StoreError(f"cannot open PostgreSQL key store: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self, pool: str | None = None) -> Iterator[Any]:
        psycopg = self._psycopg
        with self._lock:
            try:
                tx = self._conn.transaction()
                tx.__enter__()
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL key store: {exc}") from exc
            cur = self._conn.cursor()
            try:
                if pool is not None:
                    lock_id = zlib.crc32(f"{self._prefix}{pool}".encode())
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
                yield cur
            except BaseException as exc:
                cur.close()
                with contextlib.suppress(psycopg.Error):
                    tx.__exit__(type(exc), exc, exc.__traceback__)
                if isinstance(exc, psycopg.Error):
                    raise StoreError(f"PostgreSQL key store: {exc}") from exc
                raise
            else:
                cur.close()
                try:
                    tx.__exit__(None, None, None)
                except psycopg.Error as exc:
                    raise StoreError(f"PostgreSQL key store: {exc}") from exc

    def _zero(self, cur: Any, pool: str, kid: str, start: int, n: int) -> None:
        self._exec(
            cur,
            "UPDATE qk_keys SET bits = OVERLAY(bits PLACING ? FROM ? FOR ?) "
            "WHERE pool = ? AND key_id = ?",
            (bytes(n), start + 1, n, pool, kid),
        )

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return "PostgresKeyStore(...)"
