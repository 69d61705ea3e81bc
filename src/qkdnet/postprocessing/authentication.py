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
from qkdnet.postprocessing._gf2 import (
    HAS_VPCLMUL512,
    _gf64_reduce,
    _load_le64,
    clmul,
    clmul_dot8,
    gf64_mul,
)

__all__ = [
    "AuthenticatedChannel",
    "Frame",
    "PreSharedKeyPool",
    "Role",
    "WegmanCarterAuthenticator",
    "message_epsilon",
]

WORD_BITS = 64

#: What ``tag``, ``verify`` and ``AuthenticatedChannel.send`` take: bytes, or any other
#: object with the buffer protocol (bytearray, memoryview, NumPy array).
Message = bytes | bytearray | memoryview


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
    return _epsilon(message_bytes, _check_tag_bits(tag_bits) // WORD_BITS)


def _epsilon(message_bytes: int, lanes: int) -> float:
    # message_epsilon without the checks (the channel calls it per message)
    return float(((-(-message_bytes // 8) + 1) / 2.0**64) ** lanes)


class PreSharedKeyPool:
    """Secret bits shared in advance by both ends, consumed front to back, never reused.

    Each end holds its own pool object with the same content. ``take`` hands out the next
    bits and erases them from the pool; ``refill`` appends fresh key (e.g. part of the
    previous block's secret output). ``consumed_bits`` counts exactly what was taken.
    """

    def __init__(self, bits: np.ndarray | bytes = b"") -> None:
        # the pool is _bits[_start:_end]; bits before _start were handed out (and zeroed),
        # the room after _end takes refills without copying the pool
        self._bits = np.zeros(0, dtype=np.uint8)
        self._start = 0
        self._end = 0
        self.consumed_bits = 0
        self.added_bits = 0
        self.refill(bits)

    @staticmethod
    def _to_bits(bits: np.ndarray | bytes) -> np.ndarray:
        if isinstance(bits, bytes | bytearray):
            return np.unpackbits(np.frombuffer(bytes(bits), dtype=np.uint8), bitorder="little")
        arr = np.asarray(bits)
        if arr.ndim != 1 or (arr.size and (
            arr.dtype.kind not in "biu" or int(arr.max()) > 1
            or (arr.dtype.kind != "u" and int(arr.min()) < 0)
        )):
            raise ParameterError("bits", "must be bytes or a 1-D array of 0/1 bits")
        return arr.astype(np.uint8, copy=True)

    @property
    def available_bits(self) -> int:
        """Bits left in the pool."""
        return self._end - self._start

    def refill(self, bits: np.ndarray | bytes) -> None:
        """Append fresh shared secret bits (uint8 0/1 array, or bytes = 8 bits each)."""
        self._append(self._to_bits(bits))

    def _append(self, new: np.ndarray) -> None:
        # append checked 0/1 uint8 bits: in place when there is room, else the pool moves
        # to the front of its buffer (or of a buffer twice its new size), so that a refill
        # costs O(its own size) amortised, not a copy of the whole pool
        n = int(new.size)
        if self._end + n > self._bits.size:
            live = self._end - self._start
            if 2 * (live + n) <= self._bits.size:
                buf = self._bits
            else:
                buf = np.zeros(max(2 * (live + n), 4096), dtype=np.uint8)
            buf[:live] = self._bits[self._start:self._end]  # overlap-safe copy
            buf[live:self._end] = 0  # erase what is left behind
            if buf is not self._bits:
                self._bits[:] = 0
            self._bits, self._start, self._end = buf, 0, live
        self._bits[self._end:self._end + n] = new
        self._end += n
        self.added_bits += n

    def _check_take(self, n_bits: int) -> None:
        if n_bits < 0:
            raise ParameterError("n_bits", f"must be >= 0, got {n_bits}")
        if n_bits > self._end - self._start:
            raise KeyExhausted(
                f"pre-shared key pool has {self.available_bits} bits, {n_bits} needed; "
                "refill it from a previous block's secret key"
            )

    def _taken(self, n_bits: int) -> None:
        # the next n_bits were handed out (and erased); _append reclaims the room
        self._start += n_bits
        self.consumed_bits += n_bits

    def take(self, n_bits: int) -> np.ndarray:
        """Remove and return the next ``n_bits`` bits; raises KeyExhausted (taking nothing)."""
        self._check_take(n_bits)
        end = self._start + n_bits
        out = self._bits[self._start:end].copy()
        self._bits[self._start:end] = 0  # erase what was handed out
        self._taken(n_bits)
        return out

    def take_words(self, n_words: int) -> np.ndarray:
        """The next 64 n_words bits as uint64 words (little-endian bit order: bit b of
        word w is bit 64 w + b); raises KeyExhausted (taking nothing)."""
        self._check_take(WORD_BITS * n_words)
        # packed and erased in one compiled call: a tag's pad is 64 bits, and the NumPy
        # route (slice copy, erase, packbits, view, astype) cost ~1.8 us of the ~4 us
        # that a short message's tag took
        out = _pack_erase(self._bits, self._start, n_words)
        self._taken(WORD_BITS * n_words)
        return out


@njit(cache=True, nogil=True)
def _pack_erase(bits: np.ndarray, start: int, n_words: int) -> np.ndarray:
    """Bits start .. start + 64 n_words - 1 of a 0/1 uint8 array as uint64 words (bit b of
    word w is bit start + 64 w + b), zeroing them in ``bits``."""
    out = np.zeros(n_words, dtype=np.uint64)
    for w in range(n_words):
        acc = np.uint64(0)
        for b in range(WORD_BITS):
            i = start + WORD_BITS * w + b
            acc |= np.uint64(bits[i] & 1) << np.uint64(b)
            bits[i] = 0
        out[w] = acc
    return out


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


#: Words hashed per modular reduction. With 512-bit VPCLMULQDQ (``_gf2.clmul_dot8``)
#: measured on a 4.5 MB message (shared 2-core Zen 5): 45 GB/s at 32 words, 60 at 64,
#: 62 at 128, 61-64 at 256 (and slower again for 64 KB messages: the table is longer),
#: about the L3 read bandwidth; with 128-bit PCLMULQDQ (QKDNET_NO_VPCLMUL512=1) 15.9 GB/s
#: at 32, 16.0-16.2 at 64-128 (noise), 15.1 at 16.
HASH_STEP_WORDS = 128 if HAS_VPCLMUL512 else 32


@njit(cache=True, nogil=True)
def _key_powers(key: np.uint64, step: int) -> np.ndarray:
    """P[j] = key^(step - j) in GF(2^64) for j = 0 .. step (so P[step] = 1)."""
    P = np.empty(step + 1, dtype=np.uint64)
    P[step] = np.uint64(1)
    for j in range(step - 1, -1, -1):
        P[j] = gf64_mul(P[j + 1], np.uint64(key))
    return P


@njit(cache=True, nogil=True)
def _hash_run(buf: np.ndarray, byte_off: int, n_words: int, P: np.ndarray,
              h: np.uint64) -> np.uint64:
    """Continue Horner's rule over GF(2^64) from ``h`` over ``n_words`` little-endian
    64-bit words of ``buf`` read in place from byte ``byte_off`` (any alignment), with the
    key powers ``P`` of :func:`_key_powers` (step S = len(P) - 1).

    Each step of r <= S words computes h' = h k^r + w_0 k^r + w_1 k^(r-1) + ... +
    w_(r-1) k, which is r steps of Horner's rule h <- (h + w) k written out (Carter &
    Wegman 1979): the r carry-less products are summed unreduced (reduction is linear) by
    ``clmul_dot8`` (512-bit VPCLMULQDQ, 8 words per instruction pair, where the CPU has
    it) and reduced once; word t of a step multiplies P[S - r + t] = k^(r - t). Only h
    carries from one step to the next, so the CPU overlaps the next step's products with
    this step's reduction; the last step takes the n_words mod S words that remain."""
    S = np.uint64(P.shape[0] - 1)
    eight = np.uint64(8)
    zero = np.uint64(0)
    off = np.uint64(byte_off)
    n = np.uint64(n_words)
    i = zero
    while i + S <= n:
        lo, hi = clmul_dot8(buf, off + eight * i, P, zero, S // eight)
        lo_h, hi_h = clmul(h, P[0])
        h = _gf64_reduce(lo ^ lo_h, hi ^ hi_h)
        i += S
    r = n - i
    if r:
        base = S - r
        lo, hi = clmul(h, P[base])
        g = r // eight
        if g:
            lo_g, hi_g = clmul_dot8(buf, off + eight * i, P, base, g)
            lo ^= lo_g
            hi ^= hi_g
        for t in range(g * eight, r):
            w: np.uint64 = _load_le64(buf, off + eight * (i + t))  # type: ignore[call-arg]
            lo_t, hi_t = clmul(w, P[base + t])
            lo ^= lo_t
            hi ^= hi_t
        h = _gf64_reduce(lo, hi)
    return h


@njit(cache=True, nogil=True, inline="always")
def _partial_word(buf: np.ndarray, start: int, stop: int, shift: int) -> np.uint64:
    # bytes buf[start:stop] (at most 8 - shift of them) as a little-endian word, moved up
    # by ``shift`` bytes
    w = np.uint64(0)
    for j in range(start, stop):
        w |= np.uint64(buf[j]) << np.uint64(8 * (shift + j - start))
    return w


@njit(cache=True, nogil=True)
def _message_hash(head: np.ndarray, body: np.ndarray, P: np.ndarray) -> np.uint64:
    """p_k of the message head || body (uint8 arrays) as defined in the module docstring:
    its little-endian 64-bit blocks, the last one zero padded, then the length in bits;
    the same value as :func:`qkdnet.postprocessing._gf2.poly_hash` over
    :func:`_message_blocks` (head, body). Nothing is copied: the whole words of each part
    are read in place, the word that straddles them and the padded last word are
    assembled from bytes."""
    na = head.shape[0]
    nb = body.shape[0]
    k = P[P.shape[0] - 2]
    h = _hash_run(head, 0, na // 8, P, np.uint64(0))
    ra = na % 8
    fill = 0
    if ra:  # head's last bytes and the body's first ones share a word
        fill = min(8 - ra, nb)
        w = _partial_word(head, na - ra, na, 0) | _partial_word(body, 0, fill, ra)
        h = gf64_mul(h ^ w, k)
    full = (nb - fill) // 8
    h = _hash_run(body, fill, full, P, h)
    tail = fill + 8 * full
    if tail < nb:
        h = gf64_mul(h ^ _partial_word(body, tail, nb, 0), k)
    return gf64_mul(h ^ np.uint64(8 * (na + nb)), k)


@njit(cache=True, nogil=True)
def _tag_words(head: np.ndarray, body: np.ndarray, powers: np.ndarray, consts: np.ndarray,
               pad: np.ndarray) -> np.ndarray:
    """The tag's words: lane l is p_(k_l)(head || body) XOR c_l XOR r_l, with powers[l]
    the key powers of k_l (one row per lane), consts[l] = c_l and pad[l] = r_l."""
    out = np.empty(pad.shape[0], dtype=np.uint64)
    for lane in range(pad.shape[0]):
        out[lane] = _message_hash(head, body, powers[lane]) ^ consts[lane] ^ pad[lane]
    return out


@njit(cache=True, nogil=True)
def _poly_hash_wide(
    words: np.ndarray, key: np.uint64, start: np.uint64 | int = 0
) -> np.uint64:
    """The same value as :func:`qkdnet.postprocessing._gf2.poly_hash` (Horner's rule over
    GF(2^64), Carter & Wegman 1979) over a uint64 array, continued from ``start`` (the
    value returned for the words before these), by :func:`_hash_run`."""
    return _hash_run(words, 0, words.shape[0], _key_powers(np.uint64(key), HASH_STEP_WORDS),
                     np.uint64(start))


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
        self._powers = np.zeros((0, HASH_STEP_WORDS + 1), dtype=np.uint64)  # per lane
        self._consts = np.zeros(0, dtype=np.uint64)  # c_l per lane
        self.consumed_bits = 0
        self.messages = 0
        self.epsilon = 0.0  # sum of the per-message forgery bounds (union bound)

    def _next_keys(self) -> tuple[np.ndarray, np.ndarray]:
        # the key powers of each lane (rows; computed once, when the hash keys are drawn)
        # and this message's pad r_l per lane
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
            self._powers = np.stack([_key_powers(k, HASH_STEP_WORDS)
                                     for k in self._hash_keys[0::2]])
            self._consts = self._hash_keys[1::2]
        pad = self.pool.take_words(self._lanes)
        self.consumed_bits += self.tag_bits
        return self._powers, pad

    def _compute(self, head: bytes, body: np.ndarray) -> bytes:
        # the tag of head || body; ``body`` is a uint8 array viewing the caller's buffer
        powers, pad = self._next_keys()
        tag = _tag_words(np.frombuffer(head, dtype=np.uint8), body, powers, self._consts, pad)
        self.messages += 1
        n = len(head) + body.shape[0]
        self.epsilon += _epsilon(n, self._lanes)
        return tag.astype("<u8", copy=False).tobytes()

    def tag(self, message: Message) -> bytes:
        """The tag of ``message`` (``tag_bits // 8`` bytes); consumes ``tag_bits`` of pad.

        ``message``: bytes or any C-contiguous buffer (bytearray, memoryview, NumPy array),
        hashed in place as its raw bytes; others are copied once."""
        return self._compute(b"", _byte_array(message))

    def verify(self, message: Message, tag: bytes) -> None:
        """Check a tag; consumes the same key as ``tag``. Raises AuthenticationError."""
        expected = self._compute(b"", _byte_array(message))
        if not hmac.compare_digest(expected, bytes(tag)):
            raise AuthenticationError()


def _byte_array(message: Message) -> np.ndarray:
    """A uint8 array over the raw bytes of ``message``: a view, no copy, when it is
    C-contiguous; a copy otherwise (a strided view)."""
    try:
        return np.frombuffer(message, dtype=np.uint8)
    except (BufferError, ValueError):  # not C-contiguous
        return np.frombuffer(memoryview(message).tobytes(), dtype=np.uint8)
    except TypeError:
        raise ParameterError(
            "message", f"must be bytes or a buffer, got {type(message).__name__}"
        ) from None


def _as_payload(message: Message) -> bytes | memoryview:
    """``message`` as a frame carries it, never copied unless it could still change:
    ``bytes`` and read-only 1-D memoryviews of unsigned bytes (format 'B') as the very
    object given; any other read-only C-contiguous buffer as a format-'B' memoryview of
    its bytes (no copy); a writable or strided buffer copied once into ``bytes``, so that
    what was tagged cannot change afterwards. Raises TypeError for a non-buffer."""
    if isinstance(message, bytes):
        return message
    view = memoryview(message)
    if view.readonly and view.c_contiguous:
        if view.format == "B" and view.ndim == 1 and isinstance(message, memoryview):
            return message
        return view.cast("B")
    return view.tobytes()


@dataclass(frozen=True)
class Frame:
    """One message on the classical channel, as Eve sees it (she may change any field).

    ``payload`` is what was sent: ``bytes``, or a read-only memoryview of format 'B'
    (unsigned bytes) viewing the sender's buffer, which must not change while the frame
    is in flight (a read-only view is taken as that promise; see
    :meth:`AuthenticatedChannel.send`). A frame with a memoryview payload compares equal
    to one with the same bytes, but cannot be hashed unless the buffer's owner can.
    """

    sender: Role
    sequence: int
    payload: bytes | memoryview
    tag: bytes


#: A frame's header: direction (0 from Alice, 1 from Bob) and sequence number. They are
#: authenticated with the payload (the tag covers header + payload), so a frame cannot
#: be replayed, reordered, or reflected back to its sender.
_HEADER = struct.Struct("<BQ")



TamperHook = Callable[[Frame], Frame]


class AuthenticatedChannel:
    """An authenticated classical channel between Alice and Bob, in one process, no I/O.

    ``alice_pool`` and ``bob_pool`` are the two ends' copies of the pre-shared key (same
    content). Each direction gets its own authenticator pair; to keep both ends consuming
    key in the same order, the pools are split per direction at construction: the
    first half of the initial key serves Alice -> Bob, the second half Bob -> Alice; each
    ``refill`` is split so as to even out the two directions' key (see
    ``_move_from_pools``).

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
        # By sender, Alice's first (index 0 if sender is Role.ALICE): the sender's and the
        # receiver's authenticator of that direction and the next sequence numbers. Lists,
        # not dicts keyed by Role: an Enum's hash is a Python call, twice per lookup.
        self._tx = [self._auth[(d, d)] for d in Role]
        self._rx = [self._auth[(d.peer, d)] for d in Role]
        self._next_send = [0, 0]
        self._next_recv = [0, 0]
        self._closed = False
        self.messages = 0
        self.payload_bits = 0
        self.tag_bits_sent = 0

    def _move_from_pools(self) -> None:
        """Split whatever the two end pools hold between the two directions.

        The split tops up the direction that has less key left: Alice -> Bob gets the
        first x bits, x a whole number of words as close as possible to evening out the
        two directions' key (half of the bits when they are even, as at construction),
        Bob -> Alice the rest. A fixed half split starves the busier direction: with the
        pipeline repaying exactly what was consumed, Alice (5 of a block's 7 frames) ran
        out of key after some hundreds of blocks and every later block aborted. x is
        computed from Alice's end and used at both, so the ends append the same bits to
        the same direction even while frames are in flight; a deployment with two
        separate ends would send x along (it is public: it says which bits go where,
        nothing about them).
        """
        a, b = self._pools[Role.ALICE], self._pools[Role.BOB]
        if a.available_bits != b.available_bits:
            raise ParameterError(
                "bob_pool", "the two ends' pools must hold the same amount of key"
            )
        total = a.available_bits
        mine = self._dir_pools[Role.ALICE]
        gap = mine[Role.BOB].available_bits - mine[Role.ALICE].available_bits
        x = min(max((total + gap) // 2, 0), total) // WORD_BITS * WORD_BITS
        for end, pool in ((Role.ALICE, a), (Role.BOB, b)):
            bits = pool.take(total)
            self._dir_pools[end][Role.ALICE]._append(bits[:x])
            self._dir_pools[end][Role.BOB]._append(bits[x:])

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

    def send(self, sender: Role, message: Message) -> Frame:
        """Frame and tag ``message`` from ``sender``; returns the frame as delivered.

        ``message``: ``bytes``, or a read-only C-contiguous buffer (e.g. a read-only
        memoryview of a uint8 NumPy array), carried as the frame's payload without a copy
        (see :class:`Frame`); a writable buffer (bytearray, writable memoryview or array)
        is copied once into ``bytes`` before it is tagged."""
        self._check_open()
        if not isinstance(sender, Role):
            raise ParameterError("sender", f"must be Role.ALICE or Role.BOB, got {sender!r}")
        try:
            payload = _as_payload(message)
        except TypeError:
            raise ParameterError(
                "message", f"must be bytes or a buffer, got {type(message).__name__}"
            ) from None
        d = 0 if sender is Role.ALICE else 1
        seq = self._next_send[d]
        body = np.frombuffer(payload, dtype=np.uint8)
        tag = self._tx[d]._compute(_HEADER.pack(d, seq), body)
        self._next_send[d] = seq + 1
        self.messages += 1
        self.payload_bits += 8 * body.shape[0]
        self.tag_bits_sent += self.tag_bits
        frame = Frame(sender=sender, sequence=seq, payload=payload, tag=tag)
        if self.tamper is not None:
            frame = self.tamper(frame)
        return frame

    def receive(self, frame: Frame) -> bytes | memoryview:
        """Check a frame at the receiving end; returns its payload (the frame's
        ``payload`` object itself when it is bytes or a read-only format-'B' memoryview,
        as ``send`` makes it) or raises the opaque AuthenticationError (and closes the
        channel)."""
        self._check_open()
        try:
            sender = frame.sender
            if not isinstance(sender, Role):
                raise AuthenticationError()
            d = 0 if sender is Role.ALICE else 1
            expected = self._next_recv[d]
            # What arrived is fixed before it is checked: a writable payload (not one
            # ``send`` makes) is copied, so that the bytes returned are the bytes verified.
            payload = _as_payload(frame.payload)
            # Verify against the sequence number the receiver expects, not the one in the
            # frame: a replayed or reordered frame then fails like a forged one.
            got = self._rx[d]._compute(
                _HEADER.pack(d, expected), np.frombuffer(payload, dtype=np.uint8)
            )
            if not hmac.compare_digest(got, bytes(frame.tag)):
                raise AuthenticationError()
            if frame.sequence != expected:
                raise AuthenticationError()
        except (AuthenticationError, KeyExhausted, AttributeError, TypeError, ValueError):
            self._closed = True
            raise AuthenticationError() from None
        self._next_recv[d] = expected + 1
        return payload
