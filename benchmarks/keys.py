"""Key management benchmarks (issue 4): store operations per second and relay throughput.

* store ops/s: ``put`` (one block per transaction) and ``reserve + consume`` (one key per
  pair of transactions) for SQLite (file, synchronous=FULL, i.e. fsync per commit) and
  PostgreSQL (a server started here like the tests do: Debian's binaries, temporary data
  directory, 127.0.0.1, fsync off — so the PostgreSQL figure excludes disk flushes);
* relay throughput: Mb/s of end-to-end key (supplied to the master, stored at the slave)
  across 1, 3 and 10 hops of trusted nodes in one process (InProcessTransport, SQLite with
  synchronous=NORMAL), 64 keys of 256 bits per request.

Medians of several runs. No peer is named for this claim, so no peer column.
Run: ``.venv/bin/python benchmarks/keys.py [--quick]``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from qkdnet.keys import (
    InProcessTransport,
    KeyBlock,
    KeyManager,
    RelayPolicy,
    SimulatedClock,
    SQLiteKeyStore,
)


@contextmanager
def postgres_server() -> Iterator[str | None]:
    """A throw-away PostgreSQL server (as in tests/conftest.py); None if not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        yield None
        return
    bindir = Path(found[-1]).parent
    user = "qkdnet-pg"
    as_user: list[str] = []
    if os.geteuid() == 0:
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", user], check=True)
        as_user = ["runuser", "-u", user, "--"]
    root = Path(tempfile.mkdtemp(prefix="qkdnet-pg-bench-"))
    (root / "sock").mkdir()
    if as_user:
        shutil.chown(root, user)
        shutil.chown(root / "sock", user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    try:
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                        "postgres", "--no-sync"], check=True, capture_output=True)
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-l",
                        str(root / "log"), "-w", "-o",
                        f"-p {port} -k {root / 'sock'} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off", "start"], check=True, capture_output=True)
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def store_ops(make: Callable[[], Any], n: int, rng: np.random.Generator) -> tuple[float, float]:
    """(put/s, reserve+consume/s) for ``n`` single-key operations on a fresh store."""
    store = make()
    blocks = [KeyBlock(uuid.uuid4(), rng.bytes(32), "L", float(i)) for i in range(n)]
    t0 = time.perf_counter()
    for b in blocks:
        store.put("p", [b])
    t1 = time.perf_counter()
    for i in range(n):
        got = store.reserve("p", 1, holder="h", until=1e9, now=float(i))
        store.consume("p", [got[0].key_id], holder="h")
    t2 = time.perf_counter()
    store.close()
    return n / (t1 - t0), n / (t2 - t1)


def relay_mbps(hops: int, requests: int, tmp: Path, rng: np.random.Generator) -> float:
    """End-to-end key rate (Mb/s) of ``requests`` supplies of 64 x 256-bit keys over ``hops``."""
    nodes = [f"N{i}" for i in range(hops + 1)]
    transport, clock = InProcessTransport(), SimulatedClock()

    def router(origin: str, dest: str, policy: RelayPolicy) -> list[list[str]]:
        i, j = nodes.index(origin), nodes.index(dest)
        return [nodes[i : j + 1]]

    run = uuid.uuid4().hex[:6]
    kms = [KeyManager(n, SQLiteKeyStore(tmp / f"{run}-{n}.db", synchronous="NORMAL"),
                      transport, clock, router) for n in nodes]
    for km in kms:
        transport.attach(km.node_id, km.handle_message)
    need = requests * (48 + 64 * 32) + 4096
    for a, b in zip(kms, kms[1:], strict=False):
        link = f"{a.node_id}-{b.node_id}"
        a.add_link(link, b.node_id)
        b.add_link(link, a.node_id)
        blocks = [KeyBlock(uuid.uuid4(), rng.bytes(65536), link, 0.0)
                  for _ in range(need // 65536 + 1)]
        a.deposit_link_keys(link, blocks)
        b.deposit_link_keys(link, blocks)
    kms[0].register_sae("m")
    kms[-1].register_sae("s")
    t0 = time.perf_counter()
    for _ in range(requests):
        kms[0].supply("m", "s", nodes[-1], 64, 256)
    elapsed = time.perf_counter() - t0
    for km in kms:
        km.store.close()
    return requests * 64 * 256 / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations and runs")
    args = parser.parse_args()
    runs, n_ops, requests = (3, 200, 10) if args.quick else (5, 1000, 40)
    rng = np.random.default_rng(2026)
    tmp = Path(tempfile.mkdtemp(prefix="qkdnet-bench-keys-"))
    try:
        print(f"key stores: {n_ops} single-key operations, median of {runs} runs")
        print(f"{'backend':<28} {'put/s':>10} {'reserve+consume/s':>18}")
        backends: list[tuple[str, Callable[[], Any]]] = [
            ("SQLite (synchronous=FULL)",
             lambda: SQLiteKeyStore(tmp / f"{uuid.uuid4().hex}.db")),
            ("SQLite (synchronous=NORMAL)",
             lambda: SQLiteKeyStore(tmp / f"{uuid.uuid4().hex}.db", synchronous="NORMAL")),
        ]
        with postgres_server() as dsn:
            if dsn is not None:
                from qkdnet.keys.postgres import PostgresKeyStore

                backends.append(("PostgreSQL 127.0.0.1 (fsync=off)",
                                 lambda: PostgresKeyStore(dsn, schema_prefix="b"
                                                          + uuid.uuid4().hex[:8] + "_")))
            else:
                print("PostgreSQL: not installed, skipped")
            for name, make in backends:
                res = [store_ops(make, n_ops, rng) for _ in range(runs)]
                print(f"{name:<28} {statistics.median(r[0] for r in res):>10.0f} "
                      f"{statistics.median(r[1] for r in res):>18.0f}")
        print(f"\nrelay throughput (in process, {requests} requests of 64 x 256-bit keys, "
              f"median of {runs} runs)")
        print(f"{'hops':>4} {'end-to-end key Mb/s':>20}")
        for hops in (1, 3, 10):
            rates = [relay_mbps(hops, requests, tmp, rng) for _ in range(runs)]
            print(f"{hops:>4} {statistics.median(rates):>20.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
