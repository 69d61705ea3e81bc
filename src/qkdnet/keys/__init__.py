"""qkdnet.keys — the key management layer (ITU-T Y.3803, see DESIGN.md and docs/key-management.md).

Key blocks with IDs in key stores (SQLite embedded, PostgreSQL for production), one
:class:`KeyManager` per node receiving link keys (Kq-1), relaying over trusted nodes with
one-time pad and Wegman–Carter authentication (Kx), optionally over several node-disjoint
paths with XOR key combination (X.1714), and supplying keys to applications (Ak, ETSI 014
semantics). Clock and transport are injected: the same code runs simulated and live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qkdnet.keys.clock import Clock, SimulatedClock, SystemClock
from qkdnet.keys.manager import (
    MAC_KEY_BYTES,
    DeliveredKey,
    KeyManager,
    PairStatus,
    RelayPolicy,
    RelayStats,
    Router,
    dec_pool,
    enc_pool,
    link_direction,
    link_pool,
)
from qkdnet.keys.store import BACK, FRONT, KeyBlock, KeyRange, KeyStore, SQLiteKeyStore
from qkdnet.keys.transport import InProcessTransport, KxMessage, MessageKind, Transport

if TYPE_CHECKING:
    from qkdnet.keys.device import Etsi014DeviceSource, pull_link_keys
    from qkdnet.keys.postgres import PostgresKeyStore


def __getattr__(name: str) -> Any:
    # psycopg is an optional extra: import the PostgreSQL store only when asked for.
    # httpx (device adapter) is imported on first use too: it would triple the start-up
    # time of every key-manager process (0.1 s -> 0.4 s), which restarts matter for.
    if name == "PostgresKeyStore":
        from qkdnet.keys.postgres import PostgresKeyStore

        return PostgresKeyStore
    if name in ("Etsi014DeviceSource", "pull_link_keys"):
        from qkdnet.keys import device

        return getattr(device, name)
    raise AttributeError(name)


__all__ = [
    "BACK",
    "FRONT",
    "MAC_KEY_BYTES",
    "Clock",
    "DeliveredKey",
    "Etsi014DeviceSource",
    "InProcessTransport",
    "KeyBlock",
    "KeyManager",
    "KeyRange",
    "KeyStore",
    "KxMessage",
    "MessageKind",
    "PairStatus",
    "PostgresKeyStore",
    "RelayPolicy",
    "RelayStats",
    "Router",
    "SQLiteKeyStore",
    "SimulatedClock",
    "SystemClock",
    "Transport",
    "dec_pool",
    "enc_pool",
    "link_direction",
    "link_pool",
    "pull_link_keys",
]
