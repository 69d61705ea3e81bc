"""Ordered relay lanes (src/qkdnet/api/lanes.py) on live nodes over mutual TLS.

Network: B — A — C — D (links A-B, A-C, C-D), one SAE per node. A relays to B and C over
two links (two lanes at A), and to D through C (C forwards on its C→D lane).

Truth: relays over different link directions must not wait for each other (a relay over
A-C completes while one over A-B is held in flight — on the former single worker it
queued behind it), and the one property that matters: master and slave get the same key
bits, with no relay refused for arriving out of order.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qkdnet._commands.serve import prepare
from qkdnet.api.client import KmeClient
from qkdnet.api.lanes import RelayLanes, forward_hop
from qkdnet.api.node import LiveNode
from qkdnet.api.server import free_port
from qkdnet.errors import RelayError
from qkdnet.keys.transport import KxMessage, MessageKind

SCENARIO = """
name: lanes-test
nodes:
  - {{id: A, port: {pa}}}
  - {{id: B, port: {pb}}}
  - {{id: C, port: {pc}}}
  - {{id: D, port: {pd}}}
links:
  - {{id: A-B, a: A, b: B, length_km: 10, key_rate_bps: 400000}}
  - {{id: A-C, a: A, b: C, length_km: 10, key_rate_bps: 400000}}
  - {{id: C-D, a: C, b: D, length_km: 10, key_rate_bps: 400000}}
saes:
  - {{id: alice, node: A}}
  - {{id: bob, node: B}}
  - {{id: carol, node: C}}
  - {{id: dave, node: D}}
"""


class GatedTransport:
    """A's real HTTPS transport, except that messages to ``held`` wait for ``release``."""

    def __init__(self, inner, held: str) -> None:
        self.inner = inner
        self.held = held
        self.waiting = threading.Event()
        self.release = threading.Event()

    def send(self, message: KxMessage) -> KxMessage:
        if message.target_node == self.held and not self.release.is_set():
            self.waiting.set()
            assert self.release.wait(30)
        return self.inner.send(message)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lanes")
    ports = {f"p{n}": free_port() for n in "abcd"}
    scenario = root / "s.yaml"
    scenario.write_text(SCENARIO.format(**ports))
    plan = prepare(scenario, root / "out", None, None, 0)
    nodes = {
        nid: LiveNode(json.loads(Path(p).read_text())).start()
        for nid, p in plan["nodes"].items()
    }
    time.sleep(2.2)  # two 1-s blocks of link key at 400 kbit/s on each link
    yield plan, nodes
    for node in nodes.values():
        node.stop()


def client(plan, sae: str) -> KmeClient:
    c = json.loads(Path(plan["saes"][sae]).read_text())
    return KmeClient(c["kme_url"], c["cert"], c["key"], c["ca"])


def test_relays_over_two_links_run_in_parallel(net) -> None:
    plan, nodes = net
    km = nodes["A"].key_manager
    gate = GatedTransport(km.transport, held="B")
    km.transport = gate
    try:
        with ThreadPoolExecutor(1) as pool, client(plan, "alice") as a:
            to_bob = pool.submit(lambda: client(plan, "alice").get_key("bob", number=2))
            assert gate.waiting.wait(10), "the relay to B never reached A's transport"
            # The A→B relay is in flight (link key taken, message held): a relay over A-C
            # must not queue behind it.
            t0 = time.perf_counter()
            to_carol = a.get_key("carol", number=2)
            parallel_s = time.perf_counter() - t0
            assert not to_bob.done()
            gate.release.set()
            sent_bob = to_bob.result(20)
        assert parallel_s < 5
        with client(plan, "bob") as b, client(plan, "carol") as c:
            got_b = b.get_key_with_ids("alice", [k.key_id for k in sent_bob])
            got_c = c.get_key_with_ids("alice", [k.key_id for k in to_carol])
        assert [(k.key_id, k.key) for k in got_b] == [(k.key_id, k.key) for k in sent_bob]
        assert [(k.key_id, k.key) for k in got_c] == [(k.key_id, k.key) for k in to_carol]
    finally:
        km.transport = gate.inner


def test_concurrent_relays_match_at_both_ends_and_none_is_refused(net) -> None:
    plan, nodes = net
    failed_before = {n: node.key_manager.stats.relays_failed for n, node in nodes.items()}
    slaves = ["bob", "carol", "dave"] * 3  # A-B, A-C, and A-C-D (forwarded by C)

    def work(slave: str) -> list[tuple[str, object, bytes]]:
        out = []
        with client(plan, "alice") as a:
            for _ in range(6):
                for k in a.get_key(slave, number=2, size_bits=128):
                    out.append((slave, k.key_id, k.key))
        return out

    with ThreadPoolExecutor(len(slaves)) as pool:
        sent = [item for batch in pool.map(work, slaves) for item in batch]
    assert len(sent) == len(slaves) * 12
    assert len({key for _, _, key in sent}) == len(sent)
    for slave in ("bob", "carol", "dave"):
        mine = [(kid, key) for s, kid, key in sent if s == slave]
        with client(plan, slave) as s:
            got = []
            for i in range(0, len(mine), 16):
                got += s.get_key_with_ids("alice", [kid for kid, _ in mine[i : i + 16]])
        assert [(k.key_id, k.key) for k in got] == mine
    # Each link direction kept its order: no relay was refused (and retried) anywhere.
    for n, node in nodes.items():
        assert node.key_manager.stats.relays_failed == failed_before[n], n


def test_lane_busy_past_its_limit_is_refused_and_sorted_lanes_do_not_deadlock() -> None:
    lanes = RelayLanes("A", wait_s=0.05)
    with lanes.hold(["B"]):
        with pytest.raises(RelayError, match="A->B"), lanes.hold(["C", "B"]):
            pass
        # C was taken before B was refused; it must have been given back.
        with lanes.hold(["C"]):
            pass
    # Two callers needing the same two lanes in opposite orders both finish.
    done = []

    def grab(peers: list[str]) -> None:
        for _ in range(200):
            with lanes.hold(peers, wait_s=5):
                done.append(1)

    threads = [threading.Thread(target=grab, args=(p,)) for p in (["B", "C"], ["C", "B"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(done) == 400
    lanes.close()


def test_forward_hop() -> None:
    def relay(path: list[str], hop: int) -> KxMessage:
        body = {"path": path, "hop": hop}
        return KxMessage(MessageKind.RELAY, path[hop - 1], path[hop], "L", body)

    assert forward_hop(relay(["A", "C", "D"], 1)) == "D"
    assert forward_hop(relay(["A", "C", "D"], 2)) is None  # last hop: stores, sends nothing
    assert forward_hop(relay(["A", "B"], 1)) is None
    probe = KxMessage(MessageKind.PROBE, "A", "C", "L", {"path": ["A", "C", "D"], "hop": 1})
    assert forward_hop(probe) is None
    assert forward_hop(KxMessage(MessageKind.RELAY, "A", "C", "L", {"hop": "x"})) is None
