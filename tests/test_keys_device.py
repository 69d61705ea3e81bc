"""The ETSI 014 device adapter against a real HTTPS server with mutual TLS on 127.0.0.1.

The server is a small stand-in for a vendor's QKD device (a KME): it serves ETSI GS QKD
014 ``status``, ``enc_keys`` and ``dec_keys`` (V1.1.1 field names), hands each key out once
per side, answers 503 when dry, and refuses clients without a certificate from its CA.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qkdnet.errors import KeyExhausted, KeyManagementError, KeyNotFound, RelayError
from qkdnet.keys import InProcessTransport, KeyManager, SimulatedClock, SQLiteKeyStore, link_pool
from qkdnet.keys.device import Etsi014DeviceSource, pull_link_keys


def _cert(dirpath: Path, name: str, issuer: tuple[Any, x509.Name] | None, *, server: bool,
          ca: bool = False) -> tuple[Path, Path, Any, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    sign_key, issuer_name = issuer if issuer else (key, subject)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(sign_key, hashes.SHA256())
    cpath, kpath = dirpath / f"{name}.crt", dirpath / f"{name}.key"
    cpath.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kpath.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    return cpath, kpath, key, subject


class FakeDevice:
    """Key material of the device pair: a pool of link keys drawn from a seeded generator."""

    def __init__(self, rng: np.random.Generator, capacity_bytes: int) -> None:
        self.rng = rng
        self.left = capacity_bytes
        self.issued: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        device = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.endswith("/status"):
                    self._send(200, {"source_KME_ID": "dev-A", "target_KME_ID": "dev-B",
                                     "stored_key_count": device.left // 32})
                else:
                    self._send(404, {"message": "no such path"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with device.lock:
                    if self.path.endswith("/enc_keys"):
                        number, size = int(body.get("number", 1)), int(body.get("size", 256))
                        if size % 8:
                            return self._send(400, {"message": "size shall be a multiple of 8"})
                        if number * size // 8 > device.left:
                            return self._send(503, {"message": "not enough key material"})
                        keys = []
                        for _ in range(number):
                            kid, key = str(uuid.uuid4()), device.rng.bytes(size // 8)
                            device.issued[kid] = key
                            device.left -= len(key)
                            keys.append({"key_ID": kid, "key": base64.b64encode(key).decode()})
                        return self._send(200, {"keys": keys})
                    if self.path.endswith("/dec_keys"):
                        ids = [k["key_ID"] for k in body["key_IDs"]]
                        if any(i not in device.issued for i in ids):
                            return self._send(
                                400, {"message": "one or more keys specified are not found on KME"})
                        keys = [{"key_ID": i,
                                 "key": base64.b64encode(device.issued.pop(i)).decode()}
                                for i in ids]
                        return self._send(200, {"keys": keys})
                return self._send(404, {"message": "no such path"})

        return Handler


@pytest.fixture()
def device(tmp_path: Path) -> Iterator[dict[str, Any]]:
    ca_crt, _, ca_key, ca_name = _cert(tmp_path, "ca", None, server=False, ca=True)
    srv_crt, srv_key, _, _ = _cert(tmp_path, "device", (ca_key, ca_name), server=True)
    km_crt, km_key, _, _ = _cert(tmp_path, "km-A", (ca_key, ca_name), server=False)
    rogue_ca = _cert(tmp_path, "rogue-ca", None, server=False, ca=True)
    rogue_crt, rogue_key, _, _ = _cert(tmp_path, "rogue", (rogue_ca[2], rogue_ca[3]), server=False)
    fake = FakeDevice(np.random.default_rng(4), capacity_bytes=4096)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(srv_crt, srv_key)
    ctx.load_verify_locations(ca_crt)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no keys
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"https://127.0.0.1:{httpd.server_address[1]}", "ca": ca_crt,
               "cert": km_crt, "key": km_key, "rogue": (rogue_crt, rogue_key), "fake": fake}
    finally:
        httpd.shutdown()
        httpd.server_close()


def _kms(tmp_path: Path) -> tuple[KeyManager, KeyManager]:
    transport, clock = InProcessTransport(), SimulatedClock()
    a = KeyManager("A", SQLiteKeyStore(tmp_path / "A.db"), transport, clock)
    b = KeyManager("B", SQLiteKeyStore(tmp_path / "B.db"), transport, clock)
    for km, peer in ((a, "B"), (b, "A")):
        transport.attach(km.node_id, km.handle_message)
        km.add_link("dev-link", peer)
        km.register_sae(f"sae-{km.node_id}")
    return a, b


def _source(dev: dict[str, Any], peer: str, cert: Path | None = None,
            key: Path | None = None) -> Etsi014DeviceSource:
    return Etsi014DeviceSource(dev["url"], peer, cert=cert or dev["cert"], key=key or dev["key"],
                               ca=dev["ca"], link_id="dev-link", timeout_s=5.0)


def test_device_keys_land_in_both_pools_and_feed_supply(device: dict[str, Any],
                                                        tmp_path: Path) -> None:
    a, b = _kms(tmp_path)
    master, slave = _source(device, "km-B"), _source(device, "km-A")
    assert master.status()["source_KME_ID"] == "dev-A"
    ids = pull_link_keys(master, slave, a, b, number=4, size_bits=1024)
    left = [(x.key_id, x.bits) for x in a.store.blocks(link_pool("dev-link"))]
    right = [(x.key_id, x.bits) for x in b.store.blocks(link_pool("dev-link"))]
    assert [k for k, _ in left] == ids and left == right  # same IDs, same bits, both ends
    assert a.link_key_bytes("dev-link") == 4 * 128
    keys = a.supply("sae-A", "sae-B", "B", 2, 256)  # the device key now feeds applications
    assert b.retrieve("sae-B", "sae-A", [k.key_id for k in keys]) == keys
    with pytest.raises(KeyNotFound, match="not found"):
        slave.dec_keys(ids[:1])  # the device hands each key out once per side
    master.close()
    slave.close()


def test_device_errors_are_specific(device: dict[str, Any]) -> None:
    master = _source(device, "km-B")
    with pytest.raises(KeyExhausted):
        master.enc_keys(100, 8192)  # more than the device holds: 503
    assert device["fake"].left == 4096  # nothing was taken
    rogue = _source(device, "km-B", *device["rogue"])
    with pytest.raises(KeyManagementError, match="unreachable"):
        rogue.enc_keys(1, 256)  # a certificate from another CA fails the TLS handshake
    assert device["fake"].left == 4096
    master.close()
    rogue.close()


def test_device_key_ids_travel_over_kx(device: dict[str, Any], tmp_path: Path) -> None:
    a, b = _kms(tmp_path)
    a.attach_device("dev-link", _source(device, "km-B"))
    b.attach_device("dev-link", _source(device, "km-A"))
    ids = a.pull_device_keys("dev-link", 3, 512)
    left = [(x.key_id, x.bits) for x in a.store.blocks(link_pool("dev-link"))]
    right = [(x.key_id, x.bits) for x in b.store.blocks(link_pool("dev-link"))]
    assert [k for k, _ in left] == ids and left == right
    # If the other key manager cannot store them, this end stores nothing either.
    a.transport.detach("B")  # type: ignore[attr-defined]
    with pytest.raises(RelayError, match="key sync"):
        a.pull_device_keys("dev-link", 1, 512)
    assert [(x.key_id, x.bits) for x in a.store.blocks(link_pool("dev-link"))] == left
