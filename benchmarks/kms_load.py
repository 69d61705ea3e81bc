"""ETSI GS QKD 014 load: enc_keys + dec_keys pairs per second and latency, over HTTPS.

Starts live qkdnet nodes (``python -m qkdnet.api.node``, each its own process with its own
SQLite store, mutual TLS 1.3) on 127.0.0.1 and drives them with 1, 8 and 64 concurrent
clients. One *pair* = a master SAE's POST enc_keys (one 256-bit key) followed by the slave
SAE's POST dec_keys for that key ID; latency is that pair's wall time. Two placements:

* ``local``: master and slave on the same node (no relay: the KME overhead alone);
* ``link``:  master on node A, slave on neighbour B (one OTP relay hop over HTTPS Kx);
* ``fanout``: master on node A, the clients' slaves spread over A's three neighbours B, C
  and D (one relay hop each, over three links: relays over different links run in
  parallel, those over one link direction one at a time, in order).

The load generator is a minimal HTTP/1.1 keep-alive client on asyncio streams (one TLS
connection per client and SAE), so that the client's own cost stays small next to the
server's; both share this machine's cores. Every run is bounded in count and in time.
Prints the median of ``--repeats`` runs. Goal (issue 5): >= 2,000 pairs/s per node with
p99 < 20 ms. ``--peer URL...`` puts another ETSI 014 server under the same load (see
docs/api.md for the one run here) and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOAL_PAIRS_PER_S = 2000.0
GOAL_P99_MS = 20.0


@dataclass(frozen=True)
class Endpoint:
    """Where an SAE talks to its KME, and with which credentials."""

    host: str
    port: int
    ssl: ssl.SSLContext | None


class Http11:
    """One keep-alive HTTP/1.1 connection (just enough for JSON POSTs)."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.ep.host, self.ep.port, ssl=self.ep.ssl,
            server_hostname=self.ep.host if self.ep.ssl else None,
        )

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            await self.open()  # the server closed the connection (HTTP/1.0 servers do)
        assert self.reader is not None and self.writer is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.ep.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        closing = head.startswith(b"HTTP/1.0")
        for line in head.split(b"\r\n"):
            low = line.lower()
            if low.startswith(b"content-length:"):
                length = int(line[15:])
            elif low.startswith(b"connection:"):
                closing = b"close" in low
        data = await (self.reader.read() if length < 0 else self.reader.readexactly(length))
        if closing:
            self.writer.close()
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _run(master: Endpoint, slave: Endpoint | list[Endpoint], master_id: str,
               slave_id: str | list[str], clients: int, max_pairs: int, max_s: float,
               pids: list[int]) -> tuple[float, np.ndarray, int, float]:
    # Several slaves (``fanout``): client i talks to slave i mod len(slaves).
    slaves = slave if isinstance(slave, list) else [slave]
    slave_ids = slave_id if isinstance(slave_id, list) else [slave_id]
    dec_path = f"/api/v1/keys/{master_id}/dec_keys"
    enc_body = json.dumps({"number": 1, "size": 256}).encode()
    latencies: list[float] = []
    errors = 0
    remaining = max_pairs
    # Connections (TLS handshakes) are opened before the clock starts: a KME's clients
    # keep their connections, so the steady state is what is measured.
    conns = [
        (Http11(master), Http11(slaves[i % len(slaves)]),
         f"/api/v1/keys/{slave_ids[i % len(slaves)]}/enc_keys")
        for i in range(clients)
    ]
    for m, s, _ in conns:
        await m.open()
        await s.open()
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    deadline = started + max_s

    async def worker(m: Http11, s: Http11, enc_path: str) -> None:
        nonlocal remaining, errors
        try:
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                code, body = await m.post(enc_path, enc_body)
                if code != 200:
                    errors += 1
                    continue
                key_id = json.loads(body)["keys"][0]["key_ID"]
                code, _ = await s.post(dec_path, b'{"key_IDs":[{"key_ID":"%s"}]}' % key_id.encode())
                if code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
        finally:
            await m.close()
            await s.close()

    stalled = False
    try:
        # A server that deadlocks must not hang the benchmark: give up 10 s past the limit.
        await asyncio.wait_for(asyncio.gather(*(worker(m, s, e) for m, s, e in conns)), max_s + 10)
    except TimeoutError:
        stalled = True
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(pids) - cpu_before
    return (len(latencies) / elapsed, np.array(latencies) * 1e3,
            errors + (10**6 if stalled else 0), cpu)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time (s) used so far by processes ``pids`` (all their threads)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def measure(master: Endpoint, slave: Endpoint | list[Endpoint], master_id: str,
            slave_id: str | list[str], clients: int,
            max_pairs: int, max_s: float, repeats: int,
            server_pids: list[int] | None = None) -> dict[str, float]:
    """Median over ``repeats`` runs of pairs/s, p50 and p99 latency (ms), and errors, plus
    the servers' CPU time per pair (ms): unlike the rates, it hardly depends on what else
    runs on the machine, so ``1000 / cpu_ms`` estimates pairs/s per dedicated core."""
    runs = []
    cpu_per_pair = []
    for _ in range(repeats):
        run = asyncio.run(_run(master, slave, master_id, slave_id, clients, max_pairs, max_s,
                               server_pids or []))
        if len(run[1]):
            cpu_per_pair.append(run[3] / len(run[1]) * 1e3)
        runs.append(run)
    errors = sum(r[2] for r in runs)
    # Figures from the runs in which the server kept answering, when there are any.
    good = [r for r in runs if r[2] < 10**6] or runs
    rates = [r[0] for r in good]
    p50 = [float(np.percentile(r[1], 50)) if len(r[1]) else float("nan") for r in good]
    p99 = [float(np.percentile(r[1], 99)) if len(r[1]) else float("nan") for r in good]
    return {"pairs_per_s": float(np.median(rates)), "p50_ms": float(np.median(p50)),
            "p99_ms": float(np.median(p99)), "errors": float(errors % 10**6),
            "stalled": float(errors // 10**6),
            "cpu_ms": float(np.median(cpu_per_pair)) if cpu_per_pair else float("nan")}


SCENARIO = """
name: kms-load
nodes:
  - {{id: A, port: {pa}}}
  - {{id: B, port: {pb}}}
  - {{id: C, port: {pc}}}
  - {{id: D, port: {pd}}}
links:
  - {{id: A-B, a: A, b: B, length_km: 10, key_rate_bps: 2000000}}
  - {{id: A-C, a: A, b: C, length_km: 10, key_rate_bps: 2000000}}
  - {{id: A-D, a: A, b: D, length_km: 10, key_rate_bps: 2000000}}
saes:
  - {{id: sae-a1, node: A}}
  - {{id: sae-a2, node: A}}
  - {{id: sae-b1, node: B}}
  - {{id: sae-c1, node: C}}
  - {{id: sae-d1, node: D}}
"""


def _ctx(creds: dict[str, str]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=creds["ca"])
    ctx.load_cert_chain(creds["cert"], creds["key"])
    return ctx


def start_qkdnet(
    workdir: Path, store: str | None = None, sqlite_sync: str = "FULL"
) -> tuple[list[subprocess.Popen[bytes]], dict[str, dict[str, str]]]:
    """Live nodes A — B, A — C, A — D; returns the processes and each SAE's credentials."""
    sys.path.insert(0, str(ROOT / "src"))
    from qkdnet._commands.serve import _wait_listening, prepare
    from qkdnet.api.server import free_port

    scenario = workdir / "s.yaml"
    scenario.write_text(SCENARIO.format(pa=free_port(), pb=free_port(), pc=free_port(),
                                        pd=free_port()))
    plan = prepare(scenario, workdir / "out", store, None, 0, sqlite_sync=sqlite_sync)
    procs = [subprocess.Popen([sys.executable, "-m", "qkdnet.api.node", str(cfg)])
             for cfg in plan["nodes"].values()]
    for proc, url in zip(procs, plan["urls"].values(), strict=True):
        _wait_listening(url, proc, 30)
    time.sleep(2.5)  # link key for the relays
    creds = {s: json.loads(Path(p).read_text()) for s, p in plan["saes"].items()}
    return procs, creds


PEER_DIR = ROOT / ".peers" / "next-door-key-simulator"
PEER_PY = ROOT / ".peers" / "kme-sim-venv" / "bin" / "python"
PEER_SETUP = """peer: CreepPork/next-door-key-simulator (ETSI 014 KME simulator, Flask/werkzeug).
  set up with:
    git clone https://github.com/CreepPork/next-door-key-simulator \
        .peers/next-door-key-simulator
               python3 -m venv .peers/kme-sim-venv
               .peers/kme-sim-venv/bin/pip install flask python-dotenv pyOpenSSL requests"""


def start_peer(workdir: Path) -> tuple[list[subprocess.Popen[bytes]], dict[str, Endpoint]]:
    """Two KMEs of the peer simulator (one SAE each) with certificates from our CA."""
    sys.path.insert(0, str(ROOT / "src"))
    from qkdnet._commands.serve import _wait_listening
    from qkdnet.api.certs import issue_network
    from qkdnet.api.server import free_port

    pki = issue_network(workdir / "peer-pki", {"kme-1": ["127.0.0.1"], "kme-2": ["127.0.0.1"]},
                        ["sae-1", "sae-2"])
    ports = {"1": free_port(), "2": free_port()}
    procs = []
    for me, other in (("2", "1"), ("1", "2")):
        env = {
            **os.environ, "HOST": "127.0.0.1", "PORT": str(ports[me]), "KME_ID": f"kme-{me}",
            "ATTACHED_SAE_ID": f"sae-{me}", "DEFAULT_KEY_SIZE": "256", "MAX_KEY_COUNT": "100000",
            "MAX_KEYS_PER_REQUEST": "128", "MAX_KEY_SIZE": "8192", "MIN_KEY_SIZE": "64",
            "KEY_GEN_SEC_TO_GEN": "0.0001", "OTHER_KMES": f"https://127.0.0.1:{ports[other]}",
            "CA_FILE": str(pki.ca), "KME_CERT": str(pki.nodes[f"kme-{me}"].cert),
            "KME_KEY": str(pki.nodes[f"kme-{me}"].key), "SAE_CERT": str(pki.saes[f"sae-{me}"].cert),
        }
        proc = subprocess.Popen([str(PEER_PY), "app.py"], cwd=PEER_DIR, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        _wait_listening(f"https://127.0.0.1:{ports[me]}", proc, 30)
    time.sleep(5)  # the simulator fills its key pool one key per KEY_GEN_SEC_TO_GEN
    eps = {}
    for me in ("1", "2"):
        c = pki.saes[f"sae-{me}"]
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        ctx.load_cert_chain(str(c.cert), str(c.key))
        eps[me] = Endpoint("127.0.0.1", ports[me], ctx)
    return procs, eps


def _endpoint(creds: dict[str, str]) -> Endpoint:
    host, port = creds["kme_url"].removeprefix("https://").rsplit(":", 1)
    return Endpoint(host, int(port), _ctx(creds))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table (``--quick`` for a short run)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few pairs, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=8.0, help="per run")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--stores", nargs="+", choices=("disk", "disk-normal", "tmpfs"),
                        default=["disk", "disk-normal", "tmpfs"],
                        help="SQLite on disk (synchronous=FULL: fsync per commit), on disk "
                        "with synchronous=NORMAL (fsync at checkpoints), on /dev/shm")
    parser.add_argument("--placements", nargs="+", choices=("local", "link", "fanout"),
                        default=["local", "link", "fanout"])
    parser.add_argument("--peer", action="store_true",
                        help="also load the CreepPork/next-door-key-simulator peer (.peers/)")
    args = parser.parse_args(argv)
    max_pairs = 200 if args.quick else 4000
    repeats = 1 if args.quick else args.repeats
    max_s = 3.0 if args.quick else args.max_seconds
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    print(f"qkdnet KME, HTTPS (TLS 1.3, mutual) on 127.0.0.1, {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f} at start); "
          f"median of {repeats} run(s), <= {max_pairs} pairs or {max_s:.0f} s each")
    print(f"{'store':<12}{'placement':<10}{'clients':>8}{'pairs/s':>10}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'errors':>8}{'srv CPU ms/pair':>17}")
    for store_kind in args.stores:
        workdir = Path(tempfile.mkdtemp(prefix="kms-load-"))
        shm = Path(tempfile.mkdtemp(prefix="kms-load-", dir="/dev/shm"))
        store = f"sqlite:///{shm}/{{node}}.db" if store_kind == "tmpfs" else None
        procs: list[subprocess.Popen[bytes]] = []
        try:
            procs, creds = start_qkdnet(
                workdir, store, "NORMAL" if store_kind == "disk-normal" else "FULL"
            )
            a1, a2, b1, c1, d1 = (
                _endpoint(creds[s]) for s in ("sae-a1", "sae-a2", "sae-b1", "sae-c1", "sae-d1")
            )
            placements: dict[str, tuple[Endpoint, Endpoint | list[Endpoint], str,
                                        str | list[str]]] = {
                "local": (a1, a2, "sae-a1", "sae-a2"),
                "link": (a1, b1, "sae-a1", "sae-b1"),
                "fanout": (a1, [b1, c1, d1], "sae-a1", ["sae-b1", "sae-c1", "sae-d1"]),
            }
            for placement in args.placements:
                m, s, mid, sid = placements[placement]
                for clients in args.clients:
                    r = measure(m, s, mid, sid, clients, max_pairs, max_s, repeats,
                                [p.pid for p in procs])
                    results[(store_kind, placement, clients)] = r
                    print(f"{store_kind:<12}{placement:<10}{clients:>8}{r['pairs_per_s']:>10.0f}"
                          f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8.0f}"
                          f"{r['cpu_ms']:>17.2f}", flush=True)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(shm, ignore_errors=True)
    if args.peer:
        if not (PEER_DIR.exists() and PEER_PY.exists()):
            print(PEER_SETUP)
        else:
            workdir = Path(tempfile.mkdtemp(prefix="kms-load-peer-"))
            procs = []
            try:
                procs, eps = start_peer(workdir)
                print("peer: CreepPork/next-door-key-simulator, master and slave on two KMEs")
                for clients in args.clients:
                    r = measure(eps["1"], eps["2"], "sae-1", "sae-2", clients, max_pairs, max_s,
                                repeats, [p.pid for p in procs])
                    ours = results.get(("disk", "link", clients)) or results.get(
                        ("tmpfs", "link", clients))
                    ratio = (f"{ours['pairs_per_s'] / r['pairs_per_s']:.1f}"
                             if ours and r["pairs_per_s"] >= 0.5 else "n/a")
                    print(f"{'peer':<12}{'link':<10}{clients:>8}{r['pairs_per_s']:>10.1f}"
                          f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['errors']:>8.0f}"
                          f"{r['cpu_ms']:>17.2f}"
                          f"   qkdnet/peer (link, {args.stores[0]}) = {ratio}"
                          + (f"   STALLED in {r['stalled']:.0f} of {repeats} run(s): the "
                             "server stopped answering (figures from the other runs)"
                             if r["stalled"] else ""),
                          flush=True)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    proc.wait(30)
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other work on this machine "
          "shares the cores: compare runs only at similar load)")
    cpu = [r["cpu_ms"] for k, r in results.items() if k[1] == "local" and r["cpu_ms"] > 0]
    if cpu:
        print(f"server CPU per local pair: {min(cpu):.2f} ms at best -> about "
              f"{1000 / min(cpu):.0f} pairs/s per dedicated core (node process)")
    best = max(r["pairs_per_s"] for r in results.values())
    met = any(r["pairs_per_s"] >= GOAL_PAIRS_PER_S and r["p99_ms"] < GOAL_P99_MS
              for r in results.values())
    print(f"goal: >= {GOAL_PAIRS_PER_S:.0f} pairs/s per node with p99 < {GOAL_P99_MS:.0f} ms; "
          f"best here {best:.0f} pairs/s ({'met' if met else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
