"""ETSI GS QKD 014 V1.1.1 against live nodes: three KMEs on 127.0.0.1 over mutual TLS, each
with its own SQLite store, relaying over HTTPS (A — B — C, and an A — D link with no key).

Truth: the standard's data formats, codes and 400 messages (§5, §6; docs STANDARDS.md), and
the one property that matters — the master and the slave receive the same key bits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
import uuid
from pathlib import Path

import httpx
import pytest

from qkdnet._commands.serve import prepare
from qkdnet.api.client import AsyncKmeClient, KmeClient
from qkdnet.api.node import LiveNode
from qkdnet.api.server import free_port
from qkdnet.errors import KeyExhausted, KeyNotFound, ParameterError, Unauthorized

SCENARIO = """
name: api-test
nodes:
  - {{id: A, port: {pa}}}
  - {{id: B, port: {pb}}}
  - {{id: C, port: {pc}}}
  - {{id: D, port: {pd}}}
links:
  - {{id: A-B, a: A, b: B, length_km: 10, key_rate_bps: 400000}}
  - {{id: B-C, a: B, b: C, length_km: 10, key_rate_bps: 400000}}
  - {{id: A-D, a: A, b: D, length_km: 10, key_rate_bps: 0}}
saes:
  - {{id: alice, node: A}}
  - {{id: erin, node: A}}
  - {{id: carol, node: B}}
  - {{id: bob, node: C}}
  - {{id: frank, node: C}}
  - {{id: dave, node: D}}
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("etsi")
    ports = {f"p{n}": free_port() for n in "abcd"}
    scenario = root / "s.yaml"
    scenario.write_text(SCENARIO.format(**ports))
    plan = prepare(scenario, root / "out", None, None, 0)
    nodes = [LiveNode(json.loads(Path(p).read_text())).start() for p in plan["nodes"].values()]
    time.sleep(2.2)  # two 1-s blocks of link key at 400 kbit/s on A-B and B-C
    yield plan
    for node in nodes:
        node.stop()


def creds(plan, sae: str) -> dict:
    return json.loads(Path(plan["saes"][sae]).read_text())


def http(plan, sae: str) -> tuple[httpx.Client, str]:
    c = creds(plan, sae)
    ctx = ssl.create_default_context(cafile=c["ca"])
    ctx.load_cert_chain(c["cert"], c["key"])
    return httpx.Client(verify=ctx, base_url=c["kme_url"], timeout=20), c["kme_url"]


def client(plan, sae: str) -> KmeClient:
    c = creds(plan, sae)
    return KmeClient(c["kme_url"], c["cert"], c["key"], c["ca"])


def test_relayed_keys_are_equal_at_both_ends(net) -> None:
    with client(net, "alice") as a, client(net, "bob") as b:
        sent = a.get_key("bob", number=3, size_bits=512)
        assert len(sent) == 3 and all(len(k.key) == 64 for k in sent)
        assert len({k.key for k in sent}) == 3
        got = b.get_key_with_ids("alice", [k.key_id for k in sent])
    assert [(k.key_id, k.key) for k in got] == [(k.key_id, k.key) for k in sent]


def test_get_forms_and_base64(net) -> None:
    a, _ = http(net, "alice")
    b, _ = http(net, "bob")
    with a, b:
        r = a.get("/api/v1/keys/bob/enc_keys", params={"number": 2, "size": 128})
        assert r.status_code == 200, r.text
        keys = r.json()["keys"]
        assert set(keys[0]) == {"key_ID", "key"}
        assert len(base64.b64decode(keys[0]["key"])) == 16
        r2 = b.get("/api/v1/keys/alice/dec_keys", params={"key_ID": keys[1]["key_ID"]})
        assert r2.status_code == 200
        assert r2.json()["keys"] == [keys[1]]
        r3 = a.get("/api/v1/keys/bob/enc_keys")  # no query: one key of the default size
        assert len(base64.b64decode(r3.json()["keys"][0]["key"])) == 256 // 8


def test_multicast_to_additional_slaves(net) -> None:
    with client(net, "alice") as a, client(net, "bob") as b, client(net, "carol") as c:
        sent = a.get_key("bob", number=2, additional_slaves=["carol"])
        ids = [k.key_id for k in sent]
        assert [k.key for k in b.get_key_with_ids("alice", ids)] == [k.key for k in sent]
        assert [k.key for k in c.get_key_with_ids("alice", ids)] == [k.key for k in sent]


def test_status_fields(net) -> None:
    a, _ = http(net, "alice")
    with a:
        st = a.get("/api/v1/keys/bob/status").json()
        empty = a.get("/api/v1/keys/dave/status").json()
    assert st["source_KME_ID"] == "A" and st["target_KME_ID"] == "C"
    assert st["master_SAE_ID"] == "alice" and st["slave_SAE_ID"] == "bob"
    assert st["stored_key_count"] > 0 and st["key_size"] == 256
    assert set(st) == {
        "source_KME_ID", "target_KME_ID", "master_SAE_ID", "slave_SAE_ID", "key_size",
        "stored_key_count", "max_key_count", "max_key_per_request", "max_key_size",
        "min_key_size", "max_SAE_ID_count",
    }
    assert empty["stored_key_count"] == 0


@pytest.mark.parametrize("how", ["post", "get"])
def test_size_not_multiple_of_8(net, how: str) -> None:
    a, _ = http(net, "alice")
    with a:
        if how == "post":
            r = a.post("/api/v1/keys/bob/enc_keys", json={"number": 1, "size": 100})
        else:
            r = a.get("/api/v1/keys/bob/enc_keys", params={"size": 100})
    assert r.status_code == 400
    assert r.json()["message"] == "size shall be a multiple of 8"


def test_extensions(net) -> None:
    a, _ = http(net, "alice")
    with a:
        r = a.post("/api/v1/keys/bob/enc_keys",
                   json={"extension_mandatory": [{"abc_route_type": "direct"}]})
        assert r.status_code == 400
        assert r.json()["message"] == "not all extension_mandatory parameters are supported"
        r = a.post("/api/v1/keys/bob/enc_keys",
                   json={"extension_optional": [{"abc_route_type": "direct"}]})
        assert r.status_code == 200  # unknown optional extensions are ignored
        # Two node-disjoint paths from A to C do not exist in a line A-B-C.
        r = a.post("/api/v1/keys/bob/enc_keys", json={"extension_mandatory": [{"qkdnet_paths": 2}]})
        assert r.status_code == 400
        assert r.json()["message"] == "not all extension_mandatory request options could be met"
        r = a.post("/api/v1/keys/bob/enc_keys", json={"extension_mandatory": [{"qkdnet_paths": 1}]})
        assert r.status_code == 200


def test_key_fetched_twice_and_unknown_ids(net) -> None:
    with client(net, "alice") as a, client(net, "bob") as b:
        [key] = a.get_key("bob")
        b.get_key_with_ids("alice", [key.key_id])
        with pytest.raises(KeyNotFound):  # replayed / fetched twice
            b.get_key_with_ids("alice", [key.key_id])
        with pytest.raises(KeyNotFound):
            b.get_key_with_ids("alice", [uuid.uuid4()])
    bh, _ = http(net, "bob")
    with bh:
        r = bh.post("/api/v1/keys/alice/dec_keys", json={"key_IDs": [{"key_ID": str(key.key_id)}]})
    assert r.status_code == 400
    assert r.json() == {"message": "one or more keys specified are not found on KME"}


def test_another_pairs_keys_are_refused(net) -> None:
    with client(net, "alice") as a, client(net, "frank") as f, client(net, "bob") as b:
        [key] = a.get_key("bob")
        with pytest.raises(Unauthorized):  # frank is at bob's node but not the slave
            f.get_key_with_ids("alice", [key.key_id])
        assert b.get_key_with_ids("alice", [key.key_id])[0].key == key.key  # still intact


def test_empty_pool_is_503_and_says_so(net) -> None:
    a, _ = http(net, "alice")
    with a:
        r = a.post("/api/v1/keys/dave/enc_keys", json={"number": 1})
    assert r.status_code == 503
    assert "key pool" in r.json()["message"] and "A-D" in r.json()["message"]
    with client(net, "alice") as c, pytest.raises(KeyExhausted):
        c.get_key("dave")


def test_bad_requests_get_400_with_error_body(net) -> None:
    a, _ = http(net, "alice")
    with a:
        for body in ({"number": 0}, {"number": "2"}, {"size": 99999}, {"number": 10**6},
                     {"nope": 1}, {"additional_slave_SAE_IDs": ["ghost"]},
                     {"additional_slave_SAE_IDs": ["bob"]}):
            r = a.post("/api/v1/keys/bob/enc_keys", json=body)
            assert r.status_code == 400, (body, r.text)
            assert isinstance(r.json()["message"], str)
        r = a.post("/api/v1/keys/bob/enc_keys", content=b"{not json",
                   headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert a.post("/api/v1/keys/ghost/enc_keys", json={}).status_code == 400
        assert a.get("/api/v1/keys/bob/dec_keys", params={"key_ID": "x"}).status_code == 400
        r = a.post("/api/v1/keys/bob/dec_keys", json={"key_IDs": []})
        assert r.status_code == 400


def test_kx_endpoint_accepts_only_the_claimed_node(net) -> None:
    a, url = http(net, "alice")
    msg = {"kind": "probe", "source_node": "B", "target_node": "A", "link_id": "A-B",
           "body": {}, "tag": ""}
    with a:
        assert a.post("/kx/v1/message", json=msg).status_code == 401  # an SAE certificate
    c = json.loads(Path(net["nodes"]["C"]).read_text())
    ctx = ssl.create_default_context(cafile=c["ca"])
    ctx.load_cert_chain(c["cert"], c["key"])
    with httpx.Client(verify=ctx) as node_c:  # node C pretending to be B
        assert node_c.post(url + "/kx/v1/message", json=msg).status_code == 401


def test_skip_key_shared_between_nodes(net) -> None:
    a, _ = http(net, "alice")
    b, _ = http(net, "bob")
    with a, b:
        cap = a.get("/capabilities").json()
        assert cap["localSystemID"] == "A" and set(cap["remoteSystemID"]) == {"B", "C", "D"}
        r = a.get("/key", params={"remoteSystemID": "C", "size": 256})
        assert r.status_code == 200, r.text
        key = r.json()
        assert len(key["keyId"]) == 32 and len(bytes.fromhex(key["key"])) == 32
        peer = b.get(f"/key/{key['keyId']}", params={"remoteSystemID": "A"})
        assert peer.json() == key
        assert b.get(f"/key/{key['keyId']}", params={"remoteSystemID": "A"}).status_code == 400
        assert b.get("/key/zz", params={"remoteSystemID": "A"}).status_code == 400
        assert a.get("/key", params={"remoteSystemID": "nowhere"}).status_code == 400
        ent = a.get("/entropy", params={"minentropy": 512}).json()
        assert ent["minentropy"] == 512 and len(bytes.fromhex(ent["randomStr"])) == 64
        assert a.post("/key", params={"remoteSystemID": "C"}).status_code == 405


def test_async_client(net) -> None:
    ca, cb = creds(net, "alice"), creds(net, "bob")

    async def run() -> bool:
        async with AsyncKmeClient(ca["kme_url"], ca["cert"], ca["key"], ca["ca"]) as a, \
                AsyncKmeClient(cb["kme_url"], cb["cert"], cb["key"], cb["ca"]) as b:
            batches = await asyncio.gather(*(a.get_key("bob") for _ in range(4)))
            ids = [k.key_id for batch in batches for k in batch]
            got = await b.get_key_with_ids("alice", ids)
            return [k.key for k in got] == [k.key for batch in batches for k in batch]

    assert asyncio.run(run())


def test_client_maps_400_to_parameter_error(net) -> None:
    with client(net, "alice") as a, pytest.raises(ParameterError, match="multiple of 8"):
        a.get_key("bob", size_bits=12)


def test_opposite_relays_never_share_key_bits(net) -> None:
    """Alice→Bob and Bob→Alice at once over the same links: whatever fails (503), every key
    delivered is distinct, and each slave gets exactly the master's key (no pad reuse)."""
    import threading

    got: dict[str, list] = {"alice": [], "bob": []}
    failures: list[str] = []

    def run(me: str, peer: str) -> None:
        with client(net, me) as kme:
            for _ in range(8):
                try:
                    got[me] += kme.get_key(peer)
                except Exception as exc:  # counted, must be a clean 503
                    failures.append(str(exc))

    threads = [threading.Thread(target=run, args=p) for p in [("alice", "bob"), ("bob", "alice")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("503" in f for f in failures), failures
    keys = [k.key for k in got["alice"] + got["bob"]]
    assert len(keys) >= 8 and len(set(keys)) == len(keys)
    with client(net, "bob") as b, client(net, "alice") as a:
        if got["alice"]:
            fetched = b.get_key_with_ids("alice", [k.key_id for k in got["alice"]])
            assert [k.key for k in fetched] == [k.key for k in got["alice"]]
        if got["bob"]:
            fetched = a.get_key_with_ids("bob", [k.key_id for k in got["bob"]])
            assert [k.key for k in fetched] == [k.key for k in got["bob"]]


@pytest.mark.parametrize("body", [
    {}, {"number": 2, "size": 64}, {"size": 100}, {"number": 0}, {"number": "2"},
    {"nope": 1}, {"additional_slave_SAE_IDs": ["ghost"]},
    {"extension_mandatory": [{"abc_x": 1}]}, [], None,
])
def test_fast_path_answers_like_fastapi(net, body) -> None:
    """The hot-path ASGI handler (well-formed POSTs) and FastAPI (taken when the URL has a
    query string) give the same code and Error body, and the same key container shape."""
    a, _ = http(net, "alice")
    with a:
        fast = a.post("/api/v1/keys/bob/enc_keys", json=body)
        slow = a.post("/api/v1/keys/bob/enc_keys?via=fastapi", json=body)
    assert fast.status_code == slow.status_code, (fast.text, slow.text)
    if fast.status_code == 200:
        shape = [sorted(k) for k in fast.json()["keys"]]
        assert shape == [sorted(k) for k in slow.json()["keys"]]
    else:
        assert fast.json()["message"] == slow.json()["message"]


def test_fast_path_refuses_another_nodes_sae(net) -> None:
    b, _ = http(net, "bob")
    url_a = creds(net, "alice")["kme_url"]
    with b:
        r = b.post(url_a + "/api/v1/keys/alice/enc_keys", json={"number": 1})
        d = b.post(url_a + "/api/v1/keys/alice/dec_keys",
                   json={"key_IDs": [{"key_ID": str(uuid.uuid4())}]})
    assert r.status_code == d.status_code == 401
    assert "not attached to KME 'A'" in r.json()["message"]
