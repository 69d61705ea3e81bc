"""Mutual TLS against a real uvicorn server on 127.0.0.1: who gets in, who is refused.

Independent truth: the handshake outcomes follow from X.509 path validation (RFC 5280) as
OpenSSL performs it; the codes from ETSI GS QKD 014 V1.1.1 §5 (401 for an SAE the KME
cannot authorise).
"""

from __future__ import annotations

import math
import ssl
import uuid
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.api.app import create_app
from qkdnet.api.certs import (
    Role,
    create_ca,
    identity_from_pem,
    issue_certificate,
    issue_network,
)
from qkdnet.api.feeder import LinkFeeder, block_bytes, link_block
from qkdnet.api.server import NodeServer
from qkdnet.api.service import KmeService
from qkdnet.api.tls import MutualTLSH11Protocol
from qkdnet.errors import ParameterError


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("pki")
    net = issue_network(root / "net", {"A": ["127.0.0.1"], "B": ["127.0.0.1"]},
                        ["alice", "bob"])
    create_ca(root / "rogue", name="rogue CA")
    rogue = issue_certificate(root / "rogue", "alice", Role.SAE, root / "rogue")
    return net, rogue


@pytest.fixture(scope="module")
def server(pki):
    net, _ = pki
    # No KeyManager: every request here is refused before any key is touched.
    service = KmeService("A", None, {"alice": "A", "bob": "B"}, peer_nodes=["A", "B"])
    node = net.nodes["A"]
    # The pure-Python h11 protocol here; the live-node tests use the fastest available one
    # (httptools when installed), so both carry the peer identity under test.
    with NodeServer(create_app(service), node.cert, node.key, net.ca,
                    http=MutualTLSH11Protocol) as srv:
        yield srv


def test_certificate_carries_id_and_role(pki) -> None:
    net, _ = pki
    assert identity_from_pem(net.saes["alice"].cert.read_bytes()).id == "alice"
    assert identity_from_pem(net.nodes["A"].cert.read_bytes()).role is Role.KME
    assert (net.saes["alice"].key.stat().st_mode & 0o777) == 0o600


def test_bad_holder_id_is_refused(tmp_path: Path) -> None:
    create_ca(tmp_path)
    with pytest.raises(ParameterError, match="holder_id"):
        issue_certificate(tmp_path, "a/b", Role.SAE)


def test_no_client_certificate_is_refused_in_the_handshake(pki, server) -> None:
    net, _ = pki
    ctx = ssl.create_default_context(cafile=str(net.ca))
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.HTTPError):
        client.get(f"{server.url}/api/v1/keys/bob/status")


def test_certificate_from_another_ca_is_refused(pki, server) -> None:
    net, rogue = pki
    ctx = ssl.create_default_context(cafile=str(net.ca))
    ctx.load_cert_chain(str(rogue.cert), str(rogue.key))
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.HTTPError):
        client.get(f"{server.url}/api/v1/keys/bob/status")


def test_server_is_checked_by_the_client(pki, server) -> None:
    _, rogue = pki  # trusting only the rogue CA, the client must reject our server
    ctx = ssl.create_default_context(cafile=str(rogue.ca))
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.ConnectError):
        client.get(f"{server.url}/api/v1/keys/bob/status")


def test_tls13_is_negotiated_with_the_skip_suite(pki, server) -> None:
    net, _ = pki
    ctx = ssl.create_default_context(cafile=str(net.ca))
    ctx.load_cert_chain(str(net.saes["alice"].cert), str(net.saes["alice"].key))
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as raw, ctx.wrap_socket(
        raw, server_hostname="127.0.0.1"
    ) as tls:
        assert tls.version() == "TLSv1.3"
        assert tls.cipher()[0] == "TLS_AES_256_GCM_SHA384"  # draft-cisco-skip-02 §4


def test_tls12_only_client_is_refused(pki, server) -> None:
    net, _ = pki
    ctx = ssl.create_default_context(cafile=str(net.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(net.saes["alice"].cert), str(net.saes["alice"].key))
    with httpx.Client(verify=ctx) as client, pytest.raises(httpx.HTTPError):
        client.get(f"{server.url}/api/v1/keys/bob/status")


def _client(net, who: str, kind: str = "saes") -> httpx.Client:
    creds = getattr(net, kind)[who]
    ctx = ssl.create_default_context(cafile=str(net.ca))
    ctx.load_cert_chain(str(creds.cert), str(creds.key))
    return httpx.Client(verify=ctx)


def test_sae_of_another_node_gets_401(pki, server) -> None:
    net, _ = pki
    with _client(net, "bob") as client:  # bob belongs to node B, not A
        for response in (
            client.get(f"{server.url}/api/v1/keys/alice/status"),
            client.post(f"{server.url}/api/v1/keys/alice/enc_keys", json={}),
            client.get(f"{server.url}/capabilities"),
        ):
            assert response.status_code == 401
            assert "not attached to KME 'A'" in response.json()["message"]


def test_node_certificate_cannot_fetch_keys(pki, server) -> None:
    net, _ = pki
    with _client(net, "B", "nodes") as client:
        response = client.post(f"{server.url}/api/v1/keys/alice/enc_keys", json={})
    assert response.status_code == 401


def test_unknown_path_and_method(pki, server) -> None:
    net, _ = pki
    with _client(net, "alice") as client:
        assert client.get(f"{server.url}/nope").status_code == 404
        assert client.delete(f"{server.url}/capabilities").status_code == 405


def test_openapi_says_400_not_422(pki, server) -> None:
    net, _ = pki
    with _client(net, "alice") as client:
        doc = client.get(f"{server.url}/openapi.json").json()
    ops = [op for item in doc["paths"].values() for op in item.values()]
    assert all("422" not in op["responses"] for op in ops)
    etsi = [op for path, item in doc["paths"].items() if path.startswith("/api/v1/keys")
            for op in item.values()]
    assert len(etsi) == 5  # status, enc_keys GET+POST, dec_keys GET+POST
    assert all({"200", "400", "401", "503"} <= set(op["responses"]) for op in etsi)
    schemas = doc["components"]["schemas"]
    assert set(schemas["Status"]["required"]) == {
        "source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "key_size",
        "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
        "min_key_size", "max_SAE_ID_count",
    }
    assert set(schemas["KeyRequest"]["properties"]) == {
        "number", "size", "additional_slave_SAE_IDs", "extension_mandatory",
        "extension_optional",
    }
    assert schemas["KeyRequest"].get("required", []) == []
    assert set(schemas["KeyContainer"]["required"]) == {"keys"}
    assert set(schemas["Key"]["required"]) == {"key_ID", "key"}
    assert schemas["KeyIDItem"]["properties"]["key_ID"]["format"] == "uuid"
    assert set(schemas["Error"]["required"]) == {"message"}


def test_public_surface_is_complete() -> None:
    import qkdnet.api as api

    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_certs_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    from qkdnet.cli import main

    def cli(*args: str) -> tuple[int, str, str]:
        try:
            main(["certs", *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    assert cli("init-ca", str(tmp_path / "ca"))[0] == 0
    code, _, err = cli("issue", str(tmp_path / "ca"), "node-7", "--role", "KME",
                       "--host", "10.1.2.3")
    assert code == 0, err
    cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "node-7.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    assert cli("show", str(tmp_path / "ca" / "node-7.pem"))[1].strip() == "KME node-7"
    code, _, err = cli("issue", str(tmp_path / "ca"), "x", "--role", "boss")
    assert code == 2 and "role" in err
    code, _, err = cli("issue", str(tmp_path / "nowhere"), "x")
    assert code == 2 and "init-ca" in err


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0, 1e7), period=st.sampled_from([0.25, 0.5, 1.0]), n=st.integers(1, 500))
def test_feeder_blocks_add_up_to_the_rate(rate: float, period: float, n: int) -> None:
    """Block sizes telescope: n blocks hold exactly floor(rate * n * period / 8) bytes."""
    total = sum(block_bytes(rate, period, i) for i in range(n))
    assert total == math.floor(rate * n * period / 8)


def test_feeder_both_ends_agree_and_resume(tmp_path: Path) -> None:
    secret = bytes(range(32))
    ends: dict[str, list[tuple[uuid.UUID, bytes]]] = {"a": [], "b": []}
    feeders = {
        end: LinkFeeder("L", secret, 8000.0, 1000.0,
                        lambda _link, bits, kid, end=end: ends[end].append((kid, bits)),
                        tmp_path / f"{end}.json")
        for end in ends
    }
    assert feeders["a"].step(1003.5) == 3 and feeders["b"].step(1002.2) == 2
    feeders["b"].step(1003.9)
    assert ends["a"] == ends["b"] and len({kid for kid, _ in ends["a"]}) == 3
    assert all(len(bits) == 1000 for _, bits in ends["a"])  # 8000 b/s, 1 s blocks
    # A restarted end resumes after its last block: nothing twice, nothing skipped.
    again = LinkFeeder("L", secret, 8000.0, 1000.0,
                       lambda _l, bits, kid: ends["a"].append((kid, bits)), tmp_path / "a.json")
    assert again.step(1005.0) == 2
    assert [kid for kid, _ in ends["a"]][3:] == [link_block(secret, i, 1000)[0] for i in (3, 4)]
