"""Property test: random traffic on a small trusted-node network keeps every promise and
spends exactly the link key the accounting rule says (h * (48 + n * size) bytes per relay).

The independent truth is a ledger kept by the test from the requests alone: which paths
the router returns (shortest, deterministic), how many keys of which size went over them.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import networkx as nx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import KeyAlreadyConsumed, KeyExhausted
from qkdnet.keys import (
    MAC_KEY_BYTES,
    InProcessTransport,
    KeyManager,
    RelayPolicy,
    SimulatedClock,
    SQLiteKeyStore,
    link_pool,
)

EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("A", "E"), ("E", "D"), ("B", "E")]
GRAPH = nx.Graph(EDGES)


def _link(a: str, b: str) -> str:
    return "-".join(sorted((a, b)))


def _router(origin: str, dest: str, policy: RelayPolicy) -> list[list[str]]:
    return sorted(nx.all_simple_paths(GRAPH, origin, dest), key=lambda p: (len(p), p))


request = st.tuples(
    st.sampled_from(sorted(GRAPH)), st.sampled_from(sorted(GRAPH)),
    st.integers(1, 4), st.sampled_from([64, 128, 256]), st.sampled_from([1, 2]),
)


@settings(max_examples=12, deadline=None)
@given(requests=st.lists(request, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1))
def test_random_traffic_accounting_and_promises(
    requests: list[tuple[str, str, int, int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        transport, clock = InProcessTransport(), SimulatedClock()
        kms = {n: KeyManager(n, SQLiteKeyStore(Path(tmp) / f"{n}.db", synchronous="OFF"),
                             transport, clock, _router, min_key_size_bits=64)
               for n in sorted(GRAPH)}
        for n, km in kms.items():
            transport.attach(n, km.handle_message)
            km.register_sae(f"s{n}")
        for a, b in EDGES:
            kms[a].add_link(_link(a, b), b)
            kms[b].add_link(_link(a, b), a)
            for _ in range(int(rng.integers(2, 5))):
                bits, kid = rng.bytes(int(rng.integers(200, 800))), uuid.uuid4()
                kms[a].deposit_link_key(_link(a, b), bits, kid)
                kms[b].deposit_link_key(_link(a, b), bits, kid)
        start = {(n, lk): km.link_key_bytes(lk) for n, km in kms.items() for lk in km.links}
        spent = dict.fromkeys(start, 0)
        delivered: dict[uuid.UUID, tuple[str, str, bytes]] = {}
        for origin, dest, number, size_bits, paths in requests:
            if origin == dest:
                continue
            policy = RelayPolicy(paths=paths)
            route = kms[origin].paths_to(dest, policy)
            try:
                keys = kms[origin].supply(f"s{origin}", f"s{dest}", dest, number, size_bits,
                                          policy=policy)
            except KeyExhausted:
                continue  # the probe found a dry hop: nothing may have been spent
            for path in route:
                for a, b in zip(path, path[1:], strict=False):
                    for end in (a, b):
                        spent[(end, _link(a, b))] += MAC_KEY_BYTES + number * size_bits // 8
            for k in keys:
                assert k.key_id not in delivered  # never the same ID twice
                assert len(k.key) == size_bits // 8
                delivered[k.key_id] = (origin, dest, k.key)
            now = {(n, lk): km.link_key_bytes(lk) for n, km in kms.items() for lk in km.links}
            assert {e: start[e] - now[e] for e in start} == spent  # exact, every link, both ends
        for a, b in EDGES:
            pool = link_pool(_link(a, b))
            assert [(x.key_id, x.bits) for x in kms[a].store.blocks(pool)] == [
                (x.key_id, x.bits) for x in kms[b].store.blocks(pool)]
        for kid, (origin, dest, key) in delivered.items():
            assert kms[dest].retrieve(f"s{dest}", f"s{origin}", [kid])[0].key == key
            try:
                kms[dest].retrieve(f"s{dest}", f"s{origin}", [kid])
            except KeyAlreadyConsumed:
                pass
            else:
                raise AssertionError("a key was handed out twice")
        for km in kms.values():
            km.store.close()
