"""Persistent thread pools shared by the post-processing stages (private).

A pool per (purpose, size), created on first use and kept for the life of the process:
the stages' threads keep their per-thread scratch buffers between calls, and no call pays
for starting threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[tuple[str, int], ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(name: str, workers: int) -> ThreadPoolExecutor:
    """The process-wide pool of ``workers`` threads named ``name`` (created once)."""
    with _LOCK:
        pool = _POOLS.get((name, workers))
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
            _POOLS[(name, workers)] = pool
        return pool
