"""Simulated QKD links that feed both ends' key pools in real time, with no coordination.

A link in ``qkdnet serve`` has a secret ``link_secret`` (32 random bytes written only into
the two end nodes' private configs) and an epoch. Block ``i`` of the link covers the wall-
clock interval ``[epoch + i·period, epoch + (i+1)·period)`` and holds
``floor(rate·(i+1)·period/8) − floor(rate·i·period/8)`` bytes (rate in bits/s), so the
long-run rate is exact. Its bits are AES-256-CTR keystream under ``link_secret`` with the
block index as nonce, and its key ID a UUID from HMAC-SHA256(link_secret, i): both ends
compute the same block independently, as two QKD devices would each output the same
secret key. (The bits stand in for a QKD device's output; they are as secret as
``link_secret``, which never leaves the two nodes' configs.)

Each end resumes after a restart from the block after the last it deposited (kept in a
small state file), catching up to the present, so both ends always hold the same blocks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from qkdnet.errors import ParameterError

__all__ = ["LinkFeeder", "block_bytes", "link_block"]


def block_bytes(rate_bps: float, period_s: float, index: int) -> int:
    """Bytes in block ``index`` of a link at ``rate_bps`` bits/s with ``period_s`` blocks."""
    def total(n: int) -> int:
        return math.floor(rate_bps * n * period_s / 8.0)

    return total(index + 1) - total(index)


def link_block(link_secret: bytes, index: int, nbytes: int) -> tuple[uuid.UUID, bytes]:
    """Key ID and ``nbytes`` key bytes of block ``index`` of the link with this secret."""
    if len(link_secret) != 32:
        raise ParameterError("link_secret", "must be 32 bytes")
    nonce = index.to_bytes(16, "big")
    encryptor = Cipher(algorithms.AES(link_secret), modes.CTR(nonce)).encryptor()
    bits = encryptor.update(bytes(nbytes)) + encryptor.finalize()
    digest = hmac.new(link_secret, b"key-id" + index.to_bytes(8, "big"), hashlib.sha256).digest()
    return uuid.UUID(bytes=digest[:16], version=4), bits


@dataclass
class LinkFeeder:
    """Deposits a link's blocks into one end's KeyManager as wall-clock time passes.

    ``deposit(link_id, bits, key_id)`` is :meth:`qkdnet.keys.KeyManager.deposit_link_key`;
    ``rate_bps`` in bits/s, ``period_s`` and ``epoch`` in seconds (Unix time).
    """

    link_id: str
    link_secret: bytes
    rate_bps: float
    epoch: float
    deposit: Callable[[str, bytes, uuid.UUID], object]
    state_file: Path
    period_s: float = 1.0
    #: Never deposit more than this many blocks in one catch-up (a node off for days).
    max_catch_up_blocks: int = 3600

    def __post_init__(self) -> None:
        if self.rate_bps < 0 or self.period_s <= 0:
            raise ParameterError("rate_bps", "rate must be >= 0 bits/s and period > 0 s")
        self._next = self._load_next()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.blocks_deposited = 0
        self.bits_deposited = 0

    def _load_next(self) -> int:
        try:
            return int(json.loads(self.state_file.read_text())["next_block"])
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def _save_next(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"next_block": self._next}))
        os.replace(tmp, self.state_file)

    def step(self, now: float) -> int:
        """Deposit every block that ended by ``now`` (seconds); returns how many."""
        due = math.floor((now - self.epoch) / self.period_s)  # blocks [0, due) are complete
        if due - self._next > self.max_catch_up_blocks:
            self._next = due - self.max_catch_up_blocks
        count = 0
        while self._next < due:
            nbytes = block_bytes(self.rate_bps, self.period_s, self._next)
            if nbytes > 0:
                key_id, bits = link_block(self.link_secret, self._next, nbytes)
                self.deposit(self.link_id, bits, key_id)
                self.bits_deposited += 8 * nbytes
            self._next += 1
            count += 1
            # Written after each deposit: a crash re-deposits at most one block, which the
            # store refuses as a duplicate ID rather than holding it twice.
            self._save_next()
        self.blocks_deposited += count
        return count

    def start(self) -> LinkFeeder:
        """Run :meth:`step` every ``period_s`` seconds in a background thread."""
        def loop() -> None:
            while not self._stop.is_set():
                self.step(time.time())
                self._stop.wait(self.period_s / 4)

        self._thread = threading.Thread(target=loop, name=f"feeder-{self.link_id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the block being deposited (nothing half-written)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
