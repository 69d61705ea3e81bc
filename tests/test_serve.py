"""`qkdnet serve` end to end: real node processes on 127.0.0.1, a client written only from
ETSI GS QKD 014 (plain httpx + client certificates, no qkdnet code), the file-encryption
example in both modes, the `qkdnet keys` CLI, and a clean Ctrl-C that loses nothing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qkdnet.api.server import free_port

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """
name: serve-test
nodes:
  - {{id: A, port: {pa}}}
  - {{id: B, port: {pb}}}
  - {{id: C, port: {pc}}}
links:
  - {{id: A-B, a: A, b: B, length_km: 20, key_rate_bps: 300000}}
  - {{id: B-C, a: B, b: C, length_km: 20, key_rate_bps: 300000}}
saes:
  - {{id: alice, node: A}}
  - {{id: bob, node: C}}
"""


def start_serve(scenario: Path, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "qkdnet", "serve", str(scenario), "--out", str(out),
         "--duration", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    lines = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "press Ctrl-C" in line:
            return proc
    proc.kill()
    raise AssertionError("serve did not start:\n" + "".join(lines))


def stop_serve(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def standard_client(creds_file: Path) -> tuple[httpx.Client, dict]:
    """Only what ETSI GS QKD 014 says: HTTPS, client certificate, JSON."""
    creds = json.loads(creds_file.read_text())
    ctx = ssl.create_default_context(cafile=creds["ca"])
    ctx.load_cert_chain(creds["cert"], creds["key"])
    return httpx.Client(base_url=creds["kme_url"], verify=ctx, timeout=30), creds


@pytest.mark.slow
def test_serve_end_to_end(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(pa=free_port(), pb=free_port(), pc=free_port()))
    out = tmp_path / "run"
    proc = start_serve(scenario, out)
    try:
        time.sleep(2.5)  # a couple of one-second blocks of link key
        alice, a = standard_client(out / "saes" / "alice.json")
        bob, _ = standard_client(out / "saes" / "bob.json")
        with alice, bob:
            st = alice.get("/api/v1/keys/bob/status")
            assert st.status_code == 200 and st.json()["target_KME_ID"] == "C"
            r = alice.post("/api/v1/keys/bob/enc_keys", json={"number": 2, "size": 256})
            assert r.status_code == 200, r.text
            keys = r.json()["keys"]
            ids = {"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
            r2 = bob.post("/api/v1/keys/alice/dec_keys", json=ids)
            assert r2.status_code == 200 and r2.json()["keys"] == keys
            assert all(len(base64.b64decode(k["key"])) == 32 for k in keys)
            # A key made now and fetched only after a restart: nothing may be lost.
            pending = alice.post("/api/v1/keys/bob/enc_keys", json={}).json()["keys"][0]

        # The example application, both modes, across the relay node B.
        secret = tmp_path / "secret.bin"
        secret.write_bytes(os.urandom(3000) + b"the end")
        for mode in ("aes", "otp"):
            enc, dec = tmp_path / f"{mode}.qkd", tmp_path / f"{mode}.out"
            for args in (
                ["encrypt", "--as", str(out / "saes" / "alice.json"), "--to", "bob",
                 "--mode", mode, str(secret), str(enc)],
                ["decrypt", "--as", str(out / "saes" / "bob.json"), str(enc), str(dec)],
            ):
                done = subprocess.run([sys.executable, str(ROOT / "examples" / "file_crypto.py"),
                                       *args], capture_output=True, text=True, timeout=120)
                assert done.returncode == 0, done.stdout + done.stderr
            assert dec.read_bytes() == secret.read_bytes()
            assert secret.read_bytes()[:64] not in enc.read_bytes()

        # The CLI, with the credentials file serve wrote.
        got = subprocess.run(
            [sys.executable, "-m", "qkdnet", "keys", "get", "bob", "--number", "1",
             "--as", str(out / "saes" / "alice.json")],
            capture_output=True, text=True, timeout=60,
        )
        assert got.returncode == 0, got.stderr
        key_id = json.loads(got.stdout)["keys"][0]["key_ID"]
        by_id = subprocess.run(
            [sys.executable, "-m", "qkdnet", "keys", "get-by-id", "alice", key_id,
             "--as", str(out / "saes" / "bob.json")],
            capture_output=True, text=True, timeout=60,
        )
        assert json.loads(by_id.stdout) == json.loads(got.stdout)
        again = subprocess.run(
            [sys.executable, "-m", "qkdnet", "keys", "get-by-id", "alice", key_id,
             "--as", str(out / "saes" / "bob.json")],
            capture_output=True, text=True, timeout=60,
        )
        assert again.returncode == 2 and "not found on KME" in again.stderr
    finally:
        text = stop_serve(proc)
    assert "stopped 3 nodes cleanly" in text

    # Restart on the same state: the pending key is still there, exactly once.
    proc = start_serve(scenario, out)
    try:
        bob, _ = standard_client(out / "saes" / "bob.json")
        with bob:
            ids = {"key_IDs": [{"key_ID": pending["key_ID"]}]}
            r = bob.post("/api/v1/keys/alice/dec_keys", json=ids)
            assert r.status_code == 200 and r.json()["keys"] == [pending]
            assert bob.post("/api/v1/keys/alice/dec_keys", json=ids).status_code == 400
    finally:
        stop_serve(proc)


@pytest.mark.postgres
def test_nodes_on_postgresql_keep_pending_keys_across_restart(tmp_path: Path, postgres_dsn) -> None:
    """`--store` PostgreSQL: two nodes share one database (a table prefix each); a relayed
    key survives both nodes being stopped and started again, and is delivered once."""
    from qkdnet._commands.serve import prepare
    from qkdnet.api.client import KmeClient
    from qkdnet.api.node import LiveNode
    from qkdnet.errors import KeyNotFound

    scenario = tmp_path / "s.yaml"
    scenario.write_text(SCENARIO.format(pa=free_port(), pb=free_port(), pc=free_port()))
    plan = prepare(scenario, tmp_path / "run", postgres_dsn, None, 0)
    configs = [json.loads(Path(p).read_text()) for p in plan["nodes"].values()]
    assert all(c["store"] == postgres_dsn for c in configs)
    creds = {s: json.loads(Path(p).read_text()) for s, p in plan["saes"].items()}

    def kme(sae: str) -> KmeClient:
        c = creds[sae]
        return KmeClient(c["kme_url"], c["cert"], c["key"], c["ca"])

    nodes = [LiveNode(c).start() for c in configs]
    try:
        time.sleep(2.3)
        with kme("alice") as a:
            [key] = a.get_key("bob")
    finally:
        for n in nodes:
            n.stop()
    nodes = [LiveNode(c).start() for c in configs]
    try:
        with kme("bob") as b:
            assert b.get_key_with_ids("alice", [key.key_id])[0].key == key.key
            with pytest.raises(KeyNotFound):
                b.get_key_with_ids("alice", [key.key_id])
    finally:
        for n in nodes:
            n.stop()
