"""Ordered relay lanes: one per outgoing link direction of a node, running in parallel.

Why: the key store requires that, per link *and* per direction, a neighbour receives relays
in the order their link-key ranges were taken (``KeyStore.take_bytes`` at the sender,
``read_ranges``/``consume_ranges`` at the receiver, docs/key-management.md "Order,
replays and gaps"). A relay that overtakes an earlier one over the same direction makes
the earlier one a replay (refused: a ``RelayError``, never a wrong key, but lost work).

How: every KeyManager call that may take link key towards neighbour ``P`` — a relay this
node originates (first hop ``P``) or a relay it forwards as a trusted node (next hop
``P``) — runs while holding the lane of ``P``, from before the range is taken until the
neighbour has answered (``KeyManager`` sends synchronously, and the neighbour consumes
the ranges before it answers). So at most one message per link direction is ever in
flight, and the neighbour sees each direction's ranges in the order they were taken,
whichever thread or path they came from. Relays over *different* link directions hold
different lanes and run in parallel. Incoming Kx messages need no lane of their own: their
sender's lane already serialises them.

A lane is keyed by the neighbour's node ID: ``KeyManager.link_to`` always picks the same
link to a neighbour, so one lane per neighbour is one lane per used link direction.

Lanes are taken with a time limit. A relay path that crosses several nodes holds one
lane at each of them at once, so relays going round a ring in the same sense could wait
on each other in a cycle; the limit turns such a wait into a refused relay (``RelayError``:
nothing delivered, the link stays in step because the receiver erases the skipped
range with the next message, and the KME retries) instead of a deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from qkdnet.errors import RelayError
from qkdnet.keys.transport import KxMessage, MessageKind

__all__ = ["RelayLanes", "forward_hop"]


def forward_hop(message: KxMessage) -> str | None:
    """The neighbour that handling ``message`` will send link-key-bearing relay on to:
    the next hop of a RELAY at a trusted (intermediate) node; None for anything else
    (a relay's last hop, probes, key sync), which takes no link key towards a neighbour.
    A malformed body gives None: the KeyManager refuses it without taking key.
    """
    if message.kind is not MessageKind.RELAY:
        return None
    try:
        path = [str(n) for n in message.body["path"]]
        hop = int(message.body["hop"])
    except (KeyError, TypeError, ValueError):
        return None
    if 0 < hop < len(path) - 1:
        return path[hop + 1]
    return None


class RelayLanes:
    """The ordered lanes of node ``node_id``: a lock and a one-thread executor per neighbour.

    ``wait_s`` (s): how long a call waits for a busy lane before it is refused.
    """

    def __init__(self, node_id: str, wait_s: float = 5.0) -> None:
        self.node_id = node_id
        self.wait_s = wait_s
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._closed = False

    def _lock(self, peer: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(peer)
            if lock is None:
                lock = self._locks[peer] = threading.Lock()
            return lock

    def executor(self, peer: str) -> ThreadPoolExecutor:
        """A one-thread executor for calls that need only the lane to ``peer``: requests
        queue there in arrival order (FIFO) instead of each blocking a shared worker."""
        with self._guard:
            if self._closed:
                raise RuntimeError("relay lanes are closed")
            ex = self._executors.get(peer)
            if ex is None:
                ex = self._executors[peer] = ThreadPoolExecutor(
                    1, thread_name_prefix=f"lane-{self.node_id}-{peer}"
                )
            return ex

    @contextmanager
    def hold(self, peers: Iterable[str], wait_s: float | None = None) -> Iterator[None]:
        """Hold the lanes to every neighbour in ``peers`` (taken in sorted order, so two
        callers needing several lanes at this node never deadlock each other); RelayError
        if one stays busy longer than ``wait_s`` seconds (default ``self.wait_s``)."""
        wait = self.wait_s if wait_s is None else wait_s
        held: list[threading.Lock] = []
        try:
            for peer in sorted(set(peers)):
                lock = self._lock(peer)
                if not lock.acquire(timeout=wait):
                    raise RelayError(
                        f"relay lane {self.node_id}->{peer} stayed busy for {wait:g} s"
                    )
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()

    def close(self) -> None:
        """Stop the lanes' threads (after the server stopped taking requests)."""
        with self._guard:
            self._closed = True
            executors = list(self._executors.values())
        for ex in executors:
            ex.shutdown(wait=True)
