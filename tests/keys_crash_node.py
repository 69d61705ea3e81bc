"""One key-manager node as its own process, for the crash test (tests/test_keys_crash.py).

Usage: ``python keys_crash_node.py CONFIG_JSON``. The config names the node, its SQLite
file, its port, its links (link -> peer), its SAEs and every node's port. Requests (from
the test driver and from neighbours' key managers) arrive over
``multiprocessing.connection`` on 127.0.0.1 as JSON dicts; Kx messages between nodes use
:class:`SocketTransport`. The node prints ``ready`` once it listens. The test kills it
with SIGKILL at random moments and starts it again on the same file and port.
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from qkdnet.errors import QkdnetError, RelayError
from qkdnet.keys import KeyManager, KxMessage, RelayPolicy, SQLiteKeyStore, SystemClock

AUTHKEY = b"qkdnet-crash-test"


class SocketTransport:
    """Kx messages to a neighbour's process over a local socket, one connection per message."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports

    def send(self, message: KxMessage) -> KxMessage:
        try:
            with Client(("127.0.0.1", self.ports[message.target_node]), authkey=AUTHKEY) as conn:
                conn.send_bytes(json.dumps({"op": "kx", "message": message.to_json()}).encode())
                answer = json.loads(conn.recv_bytes())
        except (OSError, EOFError) as exc:
            raise RelayError(f"node {message.target_node!r} unreachable: {exc}") from exc
        if not answer["ok"]:
            raise RelayError(f"{answer['error']}: {answer['message']}")
        return KxMessage.from_json(answer["result"])


def serve(cfg: dict[str, Any]) -> None:
    node = cfg["node"]
    ports = {k: int(v) for k, v in cfg["ports"].items()}

    def router(origin: str, dest: str, policy: RelayPolicy) -> list[list[str]]:
        chain: list[str] = cfg["chain"]
        i, j = chain.index(origin), chain.index(dest)
        return [chain[i : j + 1] if i < j else chain[j : i + 1][::-1]]

    km = KeyManager(node, SQLiteKeyStore(cfg["db"]), SocketTransport(ports), SystemClock(),
                    router, reservation_ttl_s=float(cfg.get("ttl_s", 0.5)))
    for link, peer in cfg["links"].items():
        km.add_link(link, peer)
    for sae in cfg["saes"]:
        km.register_sae(sae)

    def handle(req: dict[str, Any]) -> Any:
        op = req["op"]
        if op == "kx":
            return km.handle_message(KxMessage.from_json(req["message"])).to_json()
        if op == "deposit":
            return str(km.deposit_link_key(req["link"], bytes.fromhex(req["bits"]),
                                           uuid.UUID(req["key_id"])))
        if op == "supply":
            keys = km.supply(req["master"], req["slave"], req["slave_node"], req["number"],
                             req["size"])
            return [[str(k.key_id), k.key.hex()] for k in keys]
        if op == "ahead":
            ids = km.relay_ahead(req["master"], req["slave"], req["slave_node"], req["number"],
                                 req["size"])
            return [str(k) for k in ids]
        if op == "retrieve":
            keys = km.retrieve(req["sae"], req["master"], [uuid.UUID(k) for k in req["ids"]])
            return [[str(k.key_id), k.key.hex()] for k in keys]
        if op == "ping":
            return node
        raise ValueError(op)

    def session(conn: Connection) -> None:
        with conn:
            while True:
                try:
                    req = json.loads(conn.recv_bytes())
                except (EOFError, OSError):
                    return
                try:
                    answer = {"ok": True, "result": handle(req)}
                except QkdnetError as exc:
                    answer = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
                conn.send_bytes(json.dumps(answer).encode())

    with Listener(("127.0.0.1", ports[node]), authkey=AUTHKEY, backlog=64) as listener:
        print("ready", flush=True)
        while True:
            try:
                conn = listener.accept()
            except (OSError, EOFError):
                continue
            threading.Thread(target=session, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
