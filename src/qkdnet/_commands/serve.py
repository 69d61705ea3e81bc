"""``qkdnet serve SCENARIO``: every node of a scenario as its own live KME service.

Each node runs in its own process (``python -m qkdnet.api.node``) with its own key store
(SQLite files by default, ``--store postgresql://...`` for PostgreSQL), serving ETSI GS QKD
014 and Cisco SKIP over mutual TLS 1.3 on 127.0.0.1 (or the host/port the scenario names),
and relaying keys to its neighbours over HTTPS. Each link is a simulated QKD link feeding
both ends' pools in real time at its secret key rate (``qkdnet.simulation.rates``: the
quantum layer's rate, or the scenario's measured ``key_rate_bps``). The command prints the
nodes, their URLs and the SAE credentials, and stops everything cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import networkx as nx
import typer
from rich.console import Console
from rich.table import Table

from qkdnet.errors import ParameterError, QkdnetError

__all__ = ["prepare", "register"]

#: Candidate relay paths kept per destination (the KeyManager tries them in order).
PATHS_PER_DESTINATION = 3


def _write_private(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


def _routes(graph: nx.Graph, trusted: set[str], source: str) -> dict[str, list[list[str]]]:
    """Up to PATHS_PER_DESTINATION shortest paths (by length, km) whose relays are trusted."""
    out: dict[str, list[list[str]]] = {}
    for target in graph.nodes:
        if target == source:
            continue
        found: list[list[str]] = []
        try:
            for path in nx.shortest_simple_paths(graph, source, target, weight="length_km"):
                if all(node in trusted for node in path[1:-1]):
                    found.append(list(path))
                if len(found) >= PATHS_PER_DESTINATION:
                    break
        except nx.NetworkXNoPath:
            pass
        if found:
            out[target] = found
    return out


def prepare(
    scenario_path: Path, out_dir: Path, store: str | None, host: str | None, base_port: int,
    rate_scale: float = 1.0, sqlite_sync: str = "FULL",
) -> dict[str, Any]:
    """Write the PKI, one private config per node and one credentials file per SAE.

    ``store``: None (SQLite files under ``out_dir/nodes``), a ``postgresql://`` DSN shared
    by all nodes (tables kept apart by a prefix per node), or a URL with ``{node}`` in it,
    e.g. ``sqlite:////dev/shm/{node}.db``. Returns ``{"nodes": {id: config path}, "urls":
    {id: url}, "saes": {id: creds path}, ...}``.
    Link secrets and epochs are kept in ``links.json`` so that a restart resumes the same
    links with the pools as they were.
    """
    from qkdnet.api.certs import issue_network
    from qkdnet.scenario import load_scenario
    from qkdnet.simulation.rates import link_rate_and_qber

    scenario = load_scenario(scenario_path)
    if rate_scale <= 0:
        raise ParameterError("rate_scale", f"must be > 0, got {rate_scale}")
    sqlite_sync = sqlite_sync.upper()
    if sqlite_sync not in ("FULL", "NORMAL"):
        raise ParameterError("sqlite_sync", f"must be FULL or NORMAL, got {sqlite_sync!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    urls: dict[str, str] = {}
    hosts: dict[str, str] = {}
    for i, node in enumerate(scenario.nodes):
        hosts[node.id] = host or node.host or "127.0.0.1"
        port = node.port or base_port + i
        urls[node.id] = f"https://{hosts[node.id]}:{port}"
    pki = issue_network(
        out_dir / "pki",
        {n: sorted({h, "127.0.0.1", "localhost"}) for n, h in hosts.items()},
        [s.id for s in scenario.saes],
    )
    links_file = out_dir / "links.json"
    saved: dict[str, Any] = json.loads(links_file.read_text()) if links_file.exists() else {}
    epoch = float(saved.get("epoch", time.time()))
    secrets_by_link: dict[str, str] = dict(saved.get("secrets", {}))
    for link in scenario.links:
        secrets_by_link.setdefault(link.id, secrets.token_bytes(32).hex())
    _write_private(links_file, {"epoch": epoch, "secrets": secrets_by_link})

    graph = nx.Graph()
    graph.add_nodes_from(n.id for n in scenario.nodes)
    rates: dict[str, float] = {}
    for link in scenario.links:
        graph.add_edge(link.a, link.b, length_km=link.length_km, id=link.id)
        rates[link.id] = link_rate_and_qber(link)[0] * rate_scale
    trusted = {n.id for n in scenario.nodes if n.trusted}
    sae_nodes = {s.id: s.node for s in scenario.saes}
    configs: dict[str, Path] = {}
    (out_dir / "nodes").mkdir(exist_ok=True)
    for node in scenario.nodes:
        nid = node.id
        node_links = [
            {
                "id": link.id, "peer": link.b if link.a == nid else link.a,
                "rate_bps": rates[link.id], "secret": secrets_by_link[link.id],
                "epoch": epoch, "period_s": 1.0,
            }
            for link in scenario.links if nid in (link.a, link.b)
        ]
        config = {
            "node_id": nid, "host": hosts[nid], "port": int(urls[nid].rsplit(":", 1)[1]),
            "store": (store or f"sqlite:///{(out_dir / 'nodes').resolve()}/{{node}}.db").replace(
                "{node}", nid
            ) if store is None or "{node}" in store else store,
            "cert": str(pki.nodes[nid].cert.resolve()), "key": str(pki.nodes[nid].key.resolve()),
            "ca": str(pki.ca.resolve()), "state_dir": str((out_dir / "nodes" / nid).resolve()),
            "node_urls": {k: v for k, v in urls.items() if k != nid},
            "sae_nodes": sae_nodes,
            "local_saes": [s for s, n in sae_nodes.items() if n == nid],
            "links": node_links,
            "routes": _routes(graph, trusted, nid),
            "sqlite_sync": sqlite_sync,
        }
        configs[nid] = out_dir / "nodes" / f"{nid}.json"
        _write_private(configs[nid], config)
    sae_files: dict[str, Path] = {}
    for sae_id, nid in sae_nodes.items():
        creds = {
            "sae_id": sae_id, "node": nid, "kme_url": urls[nid],
            "cert": str(pki.saes[sae_id].cert.resolve()),
            "key": str(pki.saes[sae_id].key.resolve()), "ca": str(pki.ca.resolve()),
        }
        sae_files[sae_id] = out_dir / "saes" / f"{sae_id}.json"
        _write_private(sae_files[sae_id], creds)
    return {"nodes": configs, "urls": urls, "saes": sae_files, "sae_nodes": sae_nodes,
            "rates": rates, "name": scenario.name}


def _wait_listening(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise QkdnetError(f"node at {url} exited with code {proc.returncode} on start-up")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise QkdnetError(f"node at {url} did not start within {timeout_s:.0f} s")


def serve(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    out: Annotated[
        Path | None, typer.Option(help="State directory (default: serve-<scenario name>).")
    ] = None,
    store: Annotated[
        str | None, typer.Option(help="postgresql://... to keep keys in PostgreSQL.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind every node to this host.")] = None,
    base_port: Annotated[int, typer.Option(help="First port; node i gets base+i.")] = 8443,
    rate_scale: Annotated[float, typer.Option(help="Multiply every link's key rate.")] = 1.0,
    sqlite_sync: Annotated[str, typer.Option(
        help="SQLite durability: FULL (a commit survives power loss) or NORMAL (survives a "
        "crash of the node; fsync only at checkpoints, much faster on slow disks).")] = "FULL",
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many seconds (default: Ctrl-C).")
    ] = None,
) -> None:
    """Run every node of SCENARIO as a live ETSI GS QKD 014 / SKIP service."""
    console = Console()
    if out is None:
        from qkdnet.scenario import load_scenario

        out = Path(f"serve-{load_scenario(scenario).name}")
    plan = prepare(scenario, out, store, host, base_port, rate_scale, sqlite_sync)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    old_int = signal.signal(signal.SIGINT, stop)
    old_term = signal.signal(signal.SIGTERM, stop)
    try:
        for nid, config in plan["nodes"].items():
            # Own session: Ctrl-C reaches only this parent, which then stops the nodes in order.
            procs[nid] = subprocess.Popen(
                [sys.executable, "-m", "qkdnet.api.node", str(config)], start_new_session=True
            )
        for nid, proc in procs.items():
            _wait_listening(plan["urls"][nid], proc, 30.0)
        table = Table(title=f"qkdnet serve {plan['name']} — ETSI GS QKD 014 + SKIP, mutual TLS")
        for col in ("node", "URL", "SAEs", "links (key rate)"):
            table.add_column(col)
        for nid, url in plan["urls"].items():
            saes = ", ".join(s for s, n in plan["sae_nodes"].items() if n == nid)
            cfg = json.loads(Path(plan["nodes"][nid]).read_text())
            links = ", ".join(f"{lk['id']} ({lk['rate_bps']:.0f} b/s)" for lk in cfg["links"])
            table.add_row(nid, url, saes, links)
        console.print(table)
        creds = Table(title="SAE credentials (qkdnet keys ... --as FILE)")
        for col in ("SAE", "node", "credentials", "certificate", "key"):
            creds.add_column(col, overflow="fold")  # paths in full, never "…"
        for sae_id, path in plan["saes"].items():
            data = json.loads(Path(path).read_text())
            creds.add_row(sae_id, data["node"], str(path), data["cert"], data["key"])
        console.print(creds)
        console.print(f"CA: {out / 'pki' / 'ca.pem'}   — press Ctrl-C to stop", highlight=False)
        started = time.monotonic()
        while not stopping:
            if duration is not None and time.monotonic() - started >= duration:
                break
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead:
                raise QkdnetError(f"node(s) {', '.join(dead)} stopped unexpectedly")
            time.sleep(0.2)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {nid: proc.wait(timeout=30) for nid, proc in procs.items()}
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    bad = {n: c for n, c in codes.items() if c != 0}
    if bad:
        raise QkdnetError(f"node(s) exited with errors: {bad}")
    console.print(f"stopped {len(codes)} nodes cleanly; key stores kept in {out / 'nodes'}")


def register(app: typer.Typer) -> None:
    """Add ``qkdnet serve`` to the CLI."""
    app.command("serve")(serve)
