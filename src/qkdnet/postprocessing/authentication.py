"""Information-theoretic authentication of the classical channel (hazmat layer).

QKD is only secure if Eve cannot impersonate Alice or Bob on the public channel, and the
authentication must not rest on computational assumptions: Wegman–Carter authentication
(Wegman & Carter, JCSS 22, 265, 1981) with a pre-shared secret key, refilled from the
keys that QKD itself produces ("key growing").

Construction, per message M (bytes), with t = tag_bits / 64 parallel 64-bit lanes:

    tag_l = h_{k_l, c_l}(M) XOR r_l,     l = 1 .. t,     h_{k, c}(M) = p_k(M) XOR c

* p_k is the polynomial hash over GF(2^64) (field polynomial z^64 + z^4 + z^3 + z + 1) of
  the message cut into L little-endian 64-bit blocks followed by a block with its length
  in bits: p_k(M) = b_1 k^{L+1} + ... + b_{L+1} k. For M != M' and any d,
  p_k(M) + p_k(M') = d is a nonzero polynomial equation of degree <= L + 1 in k (its
  k^1 coefficients differ when the lengths differ), so p is ε-almost-XOR-universal with
  ε = (L + 1) / 2^64 (Krawczyk, CRYPTO '94; Shoup, CRYPTO '96; Stinson 1994). Adding the
  uniform constant c makes h ε-almost-strongly-universal_2 (ε-ASU2): h(M) is uniform, and
  Pr[h(M) = u, h(M') = u'] = Pr[p_k(M) + p_k(M') = u + u'] / 2^64 <= ε / 2^64.
* The hash key (k_l, c_l) is drawn once per direction and reused; r_l are fresh
  one-time-pad bits, never reused. That is Wegman & Carter's scheme (JCSS 22, 265, 1981,
  Sec. 4), which Portmann proved composably secure with ε-ASU2 hashing (Key recycling in
  authentication, IEEE TIT 60, 4383, 2014): each authenticated round adds at most ε to
  the failure probability, so a forger succeeds in substituting a message with
  probability at most ε^t per message, and the first failure aborts the channel.

Key consumption, exactly: 128 t bits per direction for the hash keys (once) plus 64 t bits
of pad per message; both ends consume the same bits in the same order.

An :class:`AuthenticatedChannel` is pure (no I/O): ``send`` frames a message with its
direction and sequence number (both under the tag), ``receive`` checks the tag and the
sequence, so tampering, injection, replay and reordering all fail with one opaque
:class:`qkdnet.errors.AuthenticationError`; after a failure the channel refuses all use.
"""

from __future__ import annotations

import hmac
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numba import njit

from qkdnet.errors import AuthenticationError, KeyExhausted, ParameterError
from qkdnet.postprocessing._gf2 import _gf64_reduce, clmul, gf64_mul

__all__ = [
    "AuthenticatedChannel",
    "Frame",
    "PreSharedKeyPool",
    "Role",
    "WegmanCarterAuthenticator",
    "message_epsilon",
]

WORD_BITS = 64


class Role(Enum):
    """Which end of the link sent a frame."""

    ALICE = "alice"
    BOB = "bob"

    @property
    def peer(self) -> Role:
        return Role.BOB if self is Role.ALICE else Role.ALICE


def _check_tag_bits(tag_bits: int) -> int:
    if isinstance(tag_bits, bool) or not isinstance(tag_bits, int | np.integer) or (
        tag_bits < WORD_BITS or tag_bits % WORD_BITS
    ):
        raise ParameterError("tag_bits", f"must be a positive multiple of 64, got {tag_bits!r}")
    return int(tag_bits)


def message_epsilon(message_bytes: int, tag_bits: int = 64) -> float:
    """Forgery probability bound per message: ((ceil(8 len / 64) + 1) / 2^64)^(tag_bits/64)."""
    if message_bytes < 0:
        raise ParameterError("message_bytes", f"must be >= 0, got {message_bytes}")
    lanes = _check_tag_bits(tag_bits) // WORD_BITS
    blocks = -(-message_bytes // 8) + 1
    return float((blocks / 2.0**64) ** lanes)


class PreSharedKeyPool:
    """Secret bits shared in advance by both ends, consumed front to back, never reused.

    Each end holds its own pool object with the same content. ``take`` hands out the next
    bits and erases them from the pool; ``refill`` appends fresh key (e.g. part of the
    previous block's secret output). ``consumed_bits`` counts exactly what was taken.
    """

    def __init__(self, bits: np.ndarray | bytes = b"") -> None:
        self._bits = np.zeros(0, dtype=np.uint8)
        self._start = 0  # bits before this index were handed out (and zeroed)
        self.consumed_bits = 0
        self.added_bits = 0
        self.refill(bits)

    @staticmethod
    def _to_bits(bits: np.ndarray | bytes) -> np.ndarray:
        if isinstance(bits, bytes | bytearray):
            return np.unpackbits(np.frombuffer(bytes(bits), dtype=np.uint8), bitorder="little")
        arr = np.asarray(bits)
        if arr.ndim != 1 or (arr.size and (arr.dtype.kind not in "biu" or int(arr.max()) > 1
                                           or int(arr.min()) < 0)):
            raise ParameterError("bits", "must be bytes or a 1-D array of 0/1 bits")
        return arr.astype(np.uint8, copy=True)

    @property
    def available_bits(self) -> int:
        """Bits left in the pool."""
        return int(self._bits.size - self._start)

    def refill(self, bits: np.ndarray | bytes) -> None:
        """Append fresh shared secret bits (uint8 0/1 array, or bytes = 8 bits each)."""
        new = self._to_bits(bits)
        self._bits = np.concatenate([self._bits[self._start:], new])
        self._start = 0
        self.added_bits += int(new.size)

    def take(self, n_bits: int) -> np.ndarray:
        """Remove and return the next ``n_bits`` bits; raises KeyExhausted (taking nothing)."""
        if n_bits < 0:
            raise ParameterError("n_bits", f"must be >= 0, got {n_bits}")
        if n_bits > self.available_bits:
            raise KeyExhausted(
                f"pre-shared key pool has {self.available_bits} bits, {n_bits} needed; "
                "refill it from a previous block's secret key"
            )
        end = self._start + n_bits
        out = self._bits[self._start:end].copy()
        self._bits[self._start:end] = 0  # erase what was handed out
        self._start = end
        self.consumed_bits += n_bits
        if self._start > 65536 and 2 * self._start > self._bits.size:
            # drop the erased prefix now and then (amortised O(1) per bit taken)
            self._bits = self._bits[self._start:].copy()
            self._start = 0
        return out

    def take_words(self, n_words: int) -> np.ndarray:
        """The next 64 n_words bits as uint64 words (little-endian bit order)."""
        bits = self.take(WORD_BITS * n_words)
        return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def _message_blocks(*parts: bytes) -> np.ndarray:
    # The message is the concatenation of ``parts`` (a frame: its header, then the
    # payload); each part is copied once, straight into its place in the word buffer.
    n = sum(len(part) for part in parts)
    words = -(-n // 8)
    # One copy straight into the word buffer (little-endian words, zero padded), then the
    # length block: the detection announcements are megabytes, and a zeroed staging
    # buffer plus a converting copy (or joining header and payload first) cost about as
    # much as hashing them.
    blocks = np.empty(words + 1, dtype=np.uint64)
    raw = blocks.view(np.uint8)
    at = 0
    for part in parts:
        raw[at : at + len(part)] = np.frombuffer(part, dtype=np.uint8)
        at += len(part)
    raw[n : 8 * words] = 0
    if sys.byteorder != "little":  # pragma: no cover - x86 and ARM run little-endian
        blocks[:words] = blocks[:words].byteswap()
    blocks[-1] = np.uint64(8 * n)  # the length block
    return blocks


#: Payloads from this many bytes on are hashed in place (see _message_segments).
IN_PLACE_FROM_BYTES = 4096


def _message_segments(*parts: bytes) -> list[np.ndarray]:
    # The words of _message_blocks(*parts), as consecutive segments whose concatenation is
    # that buffer: a small copied head (the header and the few payload bytes that reach
    # the first word boundary), the rest of a long payload read in place as (unaligned)
    # little-endian words, and a copied tail with the length block. Saves copying the
    # megabytes of detection announcements at both ends.
    last = parts[-1] if parts else b""
    if len(last) < IN_PLACE_FROM_BYTES or sys.byteorder != "little":
        return [_message_blocks(*parts)]
    n = sum(len(part) for part in parts)
    head_len = n - len(last)
    fill = -head_len % 8  # payload bytes completing the head's last word
    body = (len(last) - fill) // 8
    start = fill + 8 * body
    head = _message_blocks(*parts[:-1], last[:fill])[:-1]  # without its length block
    in_place = np.frombuffer(last, dtype="<u8", count=body, offset=fill)
    tail = _message_blocks(last[start:])
    tail[-1] = np.uint64(8 * n)
    return [head, in_place, tail]


#: Words hashed per modular reduction by :func:`_poly_hash_wide`.
HASH_STEP_WORDS = 32


@njit(cache=True, nogil=True)
def _poly_hash_wide(
    words: np.ndarray, key: np.uint64, start: np.uint64 | int = 0
) -> np.uint64:
    """The same value as :func:`qkdnet.postprocessing._gf2.poly_hash` (Horner's rule over
    GF(2^64), Carter & Wegman 1979), 32 words per step: ``h' = (h + w0) k^32 + w1 k^31 +
    ... + w31 k``, with the 32 carry-less products summed unreduced and reduced once
    (reduction is linear). Horner's one-word step is a chain of multiply-reduce
    latencies; here the chain is paid once per 32 independent products: 32x fewer
    reductions than Horner and 2x faster than 8 words per step at megabyte messages.
    ``start`` (the value returned for the words before these) continues a hash over
    consecutive segments."""
    W = HASH_STEP_WORDS
    pw = np.empty(W + 1, dtype=np.uint64)  # pw[e] = k^e
    pw[0] = np.uint64(1)
    pw[1] = np.uint64(key)
    for e in range(2, W + 1):
        pw[e] = gf64_mul(pw[e - 1], pw[1])
    n = words.shape[0]
    h = np.uint64(start)
    i = 0
    while i + W <= n:
        lo, hi = clmul(h ^ words[i], pw[W])
        for t in range(1, W):
            lo_t, hi_t = clmul(words[i + t], pw[W - t])
            lo ^= lo_t
            hi ^= hi_t
        h = _gf64_reduce(lo, hi)
        i += W
    while i < n:
        h = gf64_mul(h ^ words[i], pw[1])
        i += 1
    return h


class WegmanCarterAuthenticator:
    """Tags and checks messages of one direction with keys from a :class:`PreSharedKeyPool`.

    The sender's and the receiver's authenticator must draw from pools with the same
    content and process the same messages in the same order. The hash keys (2 x
    ``tag_bits`` bits: k and c per lane) are taken at the first use; every
    ``tag``/``verify`` then takes ``tag_bits`` of pad. ``consumed_bits`` counts the key
    this object took. Raises KeyExhausted when the pool runs dry (before anything is taken
    for that message).
    """

    def __init__(self, key_pool: PreSharedKeyPool, tag_bits: int = 64) -> None:
        self.pool = key_pool
        self.tag_bits = _check_tag_bits(tag_bits)
        self._lanes = self.tag_bits // WORD_BITS
        self._hash_keys: np.ndarray | None = None
        self.consumed_bits = 0
        self.messages = 0
        self.epsilon = 0.0  # sum of the per-message forgery bounds (union bound)

    def _next_keys(self) -> tuple[np.ndarray, np.ndarray]:
        need = self.tag_bits * (3 if self._hash_keys is None else 1)
        if self.pool.available_bits < need:
            raise KeyExhausted(
                f"authentication needs {need} pre-shared bits, pool has "
                f"{self.pool.available_bits}"
            )
        if self._hash_keys is None:
            # lane l: k_l = words[2l], c_l = words[2l + 1]
            self._hash_keys = self.pool.take_words(2 * self._lanes)
            self.consumed_bits += 2 * self.tag_bits
        pad = self.pool.take_words(self._lanes)
        self.consumed_bits += self.tag_bits
        return self._hash_keys, pad

    def _compute(self, *parts: bytes) -> bytes:
        # the tag of the concatenation of ``parts``
        keys, pad = self._next_keys()
        segments = _message_segments(*parts)
        lanes = []
        for i in range(self._lanes):
            h = np.uint64(0)
            for seg in segments:
                h = np.uint64(_poly_hash_wide(seg, np.uint64(keys[2 * i]), h))
            lanes.append(h ^ keys[2 * i + 1] ^ pad[i])
        tag = np.array(lanes, dtype="<u8")
        self.messages += 1
        self.epsilon += message_epsilon(sum(len(part) for part in parts), self.tag_bits)
        return tag.tobytes()

    def tag(self, message: bytes) -> bytes:
        """The tag of ``message`` (``tag_bits // 8`` bytes); consumes ``tag_bits`` of pad."""
        return self._compute(bytes(message))

    def verify(self, message: bytes, tag: bytes) -> None:
        """Check a tag; consumes the same key as ``tag``. Raises AuthenticationError."""
        expected = self._compute(bytes(message))
        if not hmac.compare_digest(expected, bytes(tag)):
            raise AuthenticationError()


@dataclass(frozen=True)
class Frame:
    """One message on the classical channel, as Eve sees it (she may change any field)."""

    sender: Role
    sequence: int
    payload: bytes
    tag: bytes


def _header(sender: Role, sequence: int) -> bytes:
    # Direction and sequence number are authenticated with the payload (the tag covers
    # header + payload), so a frame cannot be replayed, reordered, or reflected back to
    # its sender.
    return struct.pack("<BQ", 0 if sender is Role.ALICE else 1, sequence)


TamperHook = Callable[[Frame], Frame]


class AuthenticatedChannel:
    """An authenticated classical channel between Alice and Bob, in one process, no I/O.

    ``alice_pool`` and ``bob_pool`` are the two ends' copies of the pre-shared key (same
    content). Each direction gets its own authenticator pair; to keep both ends consuming
    key in the same order, the pools are split per direction at construction: the
    first half of the initial key (and of every ``refill``) serves Alice -> Bob, the second
    half Bob -> Alice.

    ``send(sender, message)`` returns the :class:`Frame` as it arrives at the other end:
    if a ``tamper`` hook is set (a man in the middle), the frame passes through it.
    ``receive(frame)`` returns the payload or raises one opaque
    :class:`qkdnet.errors.AuthenticationError` (bad tag, wrong sequence, replay, reorder,
    reflection); after any failure the channel is closed and every call raises.
    Counters: ``messages``, ``payload_bits``, ``tag_bits_sent``, ``key_consumed_bits`` (per
    end), ``epsilon`` (union bound on a forgery having succeeded).
    """

    def __init__(
        self,
        alice_pool: PreSharedKeyPool,
        bob_pool: PreSharedKeyPool,
        *,
        tag_bits: int = 64,
        tamper: TamperHook | None = None,
    ) -> None:
        self.tag_bits = _check_tag_bits(tag_bits)
        self.tamper = tamper
        self._pools = {Role.ALICE: alice_pool, Role.BOB: bob_pool}
        # per end, per direction: (pool for A->B, pool for B->A)
        self._dir_pools: dict[Role, dict[Role, PreSharedKeyPool]] = {
            end: {Role.ALICE: PreSharedKeyPool(), Role.BOB: PreSharedKeyPool()}
            for end in Role
        }
        self._move_from_pools()
        self._auth: dict[tuple[Role, Role], WegmanCarterAuthenticator] = {
            (end, direction): WegmanCarterAuthenticator(self._dir_pools[end][direction],
                                                        self.tag_bits)
            for end in Role
            for direction in Role
        }
        self._next_send = {Role.ALICE: 0, Role.BOB: 0}
        self._next_recv = {Role.ALICE: 0, Role.BOB: 0}
        self._closed = False
        self.messages = 0
        self.payload_bits = 0
        self.tag_bits_sent = 0

    def _move_from_pools(self) -> None:
        """Split whatever the two end pools hold between the two directions."""
        a, b = self._pools[Role.ALICE], self._pools[Role.BOB]
        if a.available_bits != b.available_bits:
            raise ParameterError(
                "bob_pool", "the two ends' pools must hold the same amount of key"
            )
        total = a.available_bits
        half = (total // 2) // WORD_BITS * WORD_BITS
        for end, pool in ((Role.ALICE, a), (Role.BOB, b)):
            self._dir_pools[end][Role.ALICE].refill(pool.take(half))
            self._dir_pools[end][Role.BOB].refill(pool.take(total - half))

    def refill(self, alice_bits: np.ndarray | bytes, bob_bits: np.ndarray | bytes) -> None:
        """Add fresh shared key at both ends (e.g. from the previous block's output)."""
        a = PreSharedKeyPool._to_bits(alice_bits)
        b = PreSharedKeyPool._to_bits(bob_bits)
        if a.size != b.size:
            raise ParameterError("bob_bits", "both ends must add the same amount of key")
        self._pools[Role.ALICE].refill(a)
        self._pools[Role.BOB].refill(b)
        self._move_from_pools()

    @property
    def key_consumed_bits(self) -> int:
        """Pre-shared bits consumed at Alice's end (equals Bob's once all frames arrived)."""
        return sum(self._auth[(Role.ALICE, d)].consumed_bits for d in Role)

    @property
    def key_available_bits(self) -> int:
        """Pre-shared bits left at Alice's end, over both directions."""
        return sum(p.available_bits for p in self._dir_pools[Role.ALICE].values())

    @property
    def epsilon(self) -> float:
        """Sum over messages sent of the per-message forgery bound (union bound)."""
        return sum(self._auth[(d, d)].epsilon for d in Role)

    def _check_open(self) -> None:
        if self._closed:
            raise AuthenticationError()

    def send(self, sender: Role, message: bytes) -> Frame:
        """Frame and tag ``message`` from ``sender``; returns the frame as delivered."""
        self._check_open()
        if not isinstance(sender, Role):
            raise ParameterError("sender", f"must be Role.ALICE or Role.BOB, got {sender!r}")
        payload = bytes(message)
        seq = self._next_send[sender]
        tag = self._auth[(sender, sender)]._compute(_header(sender, seq), payload)
        self._next_send[sender] = seq + 1
        self.messages += 1
        self.payload_bits += 8 * len(payload)
        self.tag_bits_sent += self.tag_bits
        frame = Frame(sender=sender, sequence=seq, payload=payload, tag=tag)
        if self.tamper is not None:
            frame = self.tamper(frame)
        return frame

    def receive(self, frame: Frame) -> bytes:
        """Check a frame at the receiving end; returns its payload or raises the opaque
        AuthenticationError (and closes the channel)."""
        self._check_open()
        try:
            sender = frame.sender
            if not isinstance(sender, Role):
                raise AuthenticationError()
            receiver = sender.peer
            expected = self._next_recv[sender]
            # Verify against the sequence number the receiver expects, not the one in the
            # frame: a replayed or reordered frame then fails like a forged one.
            got = self._auth[(receiver, sender)]._compute(
                _header(sender, expected), bytes(frame.payload)
            )
            if not hmac.compare_digest(got, bytes(frame.tag)):
                raise AuthenticationError()
            if frame.sequence != expected:
                raise AuthenticationError()
        except (AuthenticationError, KeyExhausted, AttributeError, TypeError, ValueError):
            self._closed = True
            raise AuthenticationError() from None
        self._next_recv[sender] = expected + 1
        return bytes(frame.payload)
