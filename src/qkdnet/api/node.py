"""One live node: its store, KeyManager, HTTPS Kx transport, link feeders and KME server.

``python -m qkdnet.api.node CONFIG.json`` runs one node in the foreground; ``qkdnet serve``
starts one such process per node of a scenario. SIGINT/SIGTERM stop it cleanly: uvicorn
finishes the requests in flight, the feeders stop between blocks, and the store is closed
— every key deposited or handed out is either fully recorded or not at all (the store's
transactions), so nothing is lost.

The config (JSON, written by ``qkdnet serve``; it holds link secrets, so it is mode 0600)::

    {"node_id": "A", "host": "127.0.0.1", "port": 8443, "store": "sqlite:///.../A.db",
     "cert": ..., "key": ..., "ca": ..., "state_dir": ...,
     "node_urls": {"B": "https://127.0.0.1:8444", ...},
     "sae_nodes": {"sae-a": "A", ...}, "local_saes": ["sae-a"],
     "links": [{"id": "A-B", "peer": "B", "rate_bps": 2000.0, "secret": "<hex>",
                "epoch": 1.7e9, "period_s": 1.0}],
     "routes": {"C": [["A", "B", "C"], ["A", "D", "C"]]},
     "limits": {"key_size": 256, ...}}
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qkdnet.api.app import FastPath, create_app
from qkdnet.api.feeder import LinkFeeder
from qkdnet.api.lanes import RelayLanes
from qkdnet.api.server import NodeServer
from qkdnet.api.service import KmeLimits, KmeService, skip_sae_id
from qkdnet.api.transport import HttpsTransport, KxEndpoint
from qkdnet.errors import ParameterError

__all__ = ["LiveNode", "open_store", "static_router"]

log = logging.getLogger("qkdnet.node")


def is_postgres(url: str) -> bool:
    """Whether ``url`` names PostgreSQL: a ``postgresql://`` URL or a ``key=value`` DSN."""
    return url.startswith(("postgresql://", "postgres://")) or bool(
        re.match(r"^\s*(host|dbname|user|port)\s*=", url)
    )


def table_prefix(node_id: str) -> str:
    """A PostgreSQL table prefix for ``node_id``: lower-case, safe, and unique per node."""
    slug = re.sub(r"[^a-z0-9_]", "_", node_id.lower())[:16]
    digest = hashlib.sha256(node_id.encode()).hexdigest()[:6]
    return f"n{slug}_{digest}_"


def open_store(url: str, prefix: str = "", sqlite_sync: str = "FULL") -> Any:
    """A key store from ``sqlite:///path`` (or a bare path) or PostgreSQL (a
    ``postgresql://`` URL or a ``host=... dbname=...`` DSN); nodes sharing one PostgreSQL
    database keep apart by table ``prefix``. ``sqlite_sync``: SQLite's ``synchronous``
    (FULL: a commit survives power loss; NORMAL: survives a process crash, fsyncs only at
    WAL checkpoints)."""
    from qkdnet import keys

    if is_postgres(url):
        return keys.PostgresKeyStore(url, schema_prefix=prefix)
    path = url.removeprefix("sqlite:///").removeprefix("sqlite://")
    return keys.SQLiteKeyStore(path, synchronous=sqlite_sync)


def static_router(
    node_id: str, routes: Mapping[str, Sequence[Sequence[str]]]
) -> Any:
    """A KeyManager router over precomputed candidate paths (node IDs) to each destination.

    ``qkdnet serve`` computes them from the scenario's topology; the policy's avoided nodes
    (when the policy has such a field) are filtered out here.
    """

    def route(source: str, target: str, policy: Any) -> list[list[str]]:
        avoid = set(getattr(policy, "avoid_nodes", ()) or ()) if policy is not None else set()
        paths = [list(p) for p in routes.get(target, ())]
        return [p for p in paths if not avoid.intersection(p[1:-1])]

    return route


class LiveNode:
    """A node built from its config dict; ``start()`` serves in a thread, ``run()`` in front."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        from qkdnet import keys

        self.config = dict(config)
        node_id = str(config["node_id"])
        self.node_id = node_id
        state_dir = Path(config["state_dir"])
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = open_store(
            str(config["store"]), table_prefix(node_id), str(config.get("sqlite_sync", "FULL"))
        )
        self.transport = HttpsTransport(
            node_id, config["node_urls"], config["cert"], config["key"], config["ca"]
        )
        limits = KmeLimits(**config.get("limits", {}))
        self.key_manager = keys.KeyManager(
            node_id, self.store, self.transport, keys.SystemClock(),
            router=static_router(node_id, config.get("routes", {})),
            key_size_bits=limits.key_size, min_key_size_bits=limits.min_key_size,
            max_key_size_bits=limits.max_key_size,
            max_key_per_request=limits.max_key_per_request,
            max_key_count=limits.max_key_count, max_sae_id_count=limits.max_SAE_ID_count,
        )
        for link in config["links"]:
            self.key_manager.add_link(link["id"], link["peer"])
        sae_nodes = dict(config["sae_nodes"])
        all_nodes = sorted(set(config["node_urls"]) | {node_id})
        for sae in config.get("local_saes", []):
            self.key_manager.register_sae(sae)
        self.key_manager.register_sae(skip_sae_id(node_id))
        for other in all_nodes:  # SKIP's per-node pseudo-SAEs are known network-wide
            sae_nodes[skip_sae_id(other)] = other
        # One ordered lane per outgoing link direction, shared by the relays this node
        # originates (KmeService) and those it forwards (KxEndpoint): see api/lanes.py.
        self.lanes = RelayLanes(node_id)
        self.service = KmeService(
            node_id, self.key_manager, sae_nodes, peer_nodes=all_nodes,
            limits=limits, lanes=self.lanes,
        )
        self.kx = KxEndpoint(node_id, self.key_manager.handle_message, lanes=self.lanes)
        app = FastPath(
            create_app(self.service, extra_routers=(self.kx.router(),)), self.service, self.kx
        )
        self.server = NodeServer(
            app, config["cert"], config["key"], config["ca"],
            host=str(config.get("host", "127.0.0.1")), port=int(config["port"]),
        )
        self.feeders = [
            LinkFeeder(
                link["id"], bytes.fromhex(link["secret"]), float(link["rate_bps"]),
                float(link["epoch"]), self.key_manager.deposit_link_key,
                state_dir / f"feeder-{link['id']}.json", period_s=float(link.get("period_s", 1.0)),
            )
            for link in config["links"]
        ]

    def start(self) -> LiveNode:
        """Start feeders and the server in background threads (tests, benchmarks)."""
        for feeder in self.feeders:
            feeder.start()
        self.server.start()
        return self

    def stop(self) -> None:
        """Stop serving, stop the feeders between blocks, close the store."""
        self.server.stop()
        self._close()

    def _close(self) -> None:
        for feeder in self.feeders:
            feeder.stop()
        self.service.close()
        self.kx.close()
        self.transport.close()
        self.store.close()

    def run(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM, then close everything cleanly."""
        for feeder in self.feeders:
            feeder.start()
        try:
            self.server.run()  # uvicorn handles SIGINT/SIGTERM: graceful shutdown, returns
        finally:
            self._close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qkdnet.api.node CONFIG.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m qkdnet.api.node CONFIG.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        config = json.loads(Path(args[0]).read_text())
        node = LiveNode(config)
    except (OSError, ValueError, KeyError, ParameterError) as exc:
        print(f"error: node config {args[0]}: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # The event loop and the relay-lane/Kx worker threads hand the GIL back and forth; the
    # default 5 ms switch interval would add up to 5 ms to every relay under load.
    sys.setswitchinterval(0.0005)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal under the
    # handlers that were in place before it started: make those no-ops so that run() goes on
    # to stop the feeders and close the store instead of the process dying there.
    stopped: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: stopped.append(signum))
    node.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
