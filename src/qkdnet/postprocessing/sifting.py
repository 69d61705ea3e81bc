"""Sifting: keep the pulses where Alice and Bob used the same basis.

Hazmat layer. The key comes from the Z basis (both chose Z); every X-basis (test) bit is
announced, so the test errors per intensity class are known exactly — this is the protocol
of Lim et al., PRA 89, 022307 (2014), with their X (key) basis called Z here.

The public messages sifting needs are built here as bytes (so the pipeline can authenticate
them and count their length): Bob announces which pulses he detected and his bases; Alice
answers with her bases and intensity classes; both announce their test-basis bits.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from qkdnet.quantum.records import DetectionRecords

__all__ = ["SiftedBlock", "sift"]


@dataclass(frozen=True, eq=False)
class SiftedBlock:
    """The sifted key of one block and the counts parameter estimation needs.

    ``alice_key``/``bob_key``: Z-basis bits (uint8 0/1) where both chose Z, all intensity
    classes, in pulse order. ``key_counts[k]`` = n_Z,k (sifted key bits of class k);
    ``test_counts[k]`` = n_X,k and ``test_errors[k]`` = m_X,k (announced test bits and their
    errors). ``messages``: the public messages, as (sender, bytes), in order.
    """

    alice_key: np.ndarray
    bob_key: np.ndarray
    key_counts: np.ndarray
    test_counts: np.ndarray
    test_errors: np.ndarray
    pulses_sent: np.ndarray
    intensities: tuple[float, ...]
    protocol: str
    detections: int
    messages: tuple[tuple[str, bytes], ...]

    @property
    def sifted_bits(self) -> int:
        """Length of the sifted key, bits."""
        return int(self.alice_key.shape[0])


@numba.njit(cache=True, nogil=True)
def _sift_kernel(
    pulse_index: np.ndarray,
    a_basis: np.ndarray,
    b_basis: np.ndarray,
    a_bit: np.ndarray,
    b_bit: np.ndarray,
    a_class: np.ndarray,
    n_classes: int,
    pack_classes: bool,
    prev0: int,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, int,
]:
    # One pass over the detections does the sifting, the counts and most of the public
    # messages (Bob's varint gaps and packed bases, Alice's packed bases and classes):
    # sifting is memory-bound (a block at 50 km holds four detections per sifted bit), so
    # every extra pass over the columns, temporary or copy costs about as much as the
    # sifting itself.
    n = a_basis.shape[0]
    key_counts = np.zeros(n_classes, dtype=np.int64)
    test_counts = np.zeros(n_classes, dtype=np.int64)
    test_errors = np.zeros(n_classes, dtype=np.int64)
    # Buffers sized for the worst case (untouched pages cost nothing); the caller gets views.
    alice_key = np.empty(n, dtype=np.uint8)
    bob_key = np.empty(n, dtype=np.uint8)
    alice_test = np.empty(n, dtype=np.uint8)
    bob_test = np.empty(n, dtype=np.uint8)
    nb8 = (n + 7) >> 3
    nc4 = (n + 3) >> 2 if pack_classes else 0
    # Bob: gaps between detected pulse indices as LEB128 varints (7 bits a byte, high bit =
    # "more": 1-2 bytes per detection instead of 8), then his bases packed MSB first.
    # Two bytes per gap is the first guess; a longer message is redone exactly below.
    cap = 2 * n + 16
    bob = np.empty(cap + nb8, dtype=np.uint8)
    # Alice: her bases packed MSB first, then the classes two bits each, first in the
    # high bits (when there are at most four classes).
    alice = np.empty(nb8 + nc4, dtype=np.uint8)
    j = 0
    t = 0
    k = 0
    prev = prev0  # pulse index before the first row (0, or the last one of the rows before)
    wa = 0
    wb = 0
    wc = 0
    for i in range(n):
        g = pulse_index[i] - prev
        prev = pulse_index[i]
        if k + 10 > cap:
            k = -1  # stop encoding, finish the rest of the pass
        if k >= 0:
            if g < 16384:
                # one or two bytes without a branch on which (at 50 km the gaps straddle
                # 128, and a branch on it would mispredict every other row)
                more = int(g >= 128)
                bob[np.uint64(k)] = np.uint8((g & 127) | (more << 7))
                bob[np.uint64(k + 1)] = np.uint8(g >> 7)
                k += 1 + more
            else:
                while g >= 128:
                    bob[k] = np.uint8((g & 127) | 128)
                    g >>= 7
                    k += 1
                bob[k] = np.uint8(g)
                k += 1
        ab = a_basis[i]
        bb = b_basis[i]
        c = a_class[i]
        wa = (wa << 1) | int(ab & 1)
        wb = (wb << 1) | int(bb & 1)
        if (i & 7) == 7:
            alice[i >> 3] = np.uint8(wa & 255)
            bob[cap + (i >> 3)] = np.uint8(wb & 255)
        if pack_classes:
            wc = (wc << 2) | int(c & 3)
            if (i & 3) == 3:
                alice[nb8 + (i >> 2)] = np.uint8(wc & 255)
        # Branch-free: bases are random, so "if same basis" would mispredict half the
        # time. Every row is written to both outputs; the cursors advance where it belongs.
        same = int(ab == bb)
        z = same & int(ab == 0)
        x = same - z
        ai = a_bit[i]
        bi = b_bit[i]
        # unsigned cursors: no negative-index fix on the stores
        alice_key[np.uint64(j)] = ai
        bob_key[np.uint64(j)] = bi
        alice_test[np.uint64(t)] = ai
        bob_test[np.uint64(t)] = bi
        j += z
        t += x
        uc = np.uint64(c)
        key_counts[uc] += z
        test_counts[uc] += x
        test_errors[uc] += x & int(ai != bi)
    if n & 7:
        pad = 8 - (n & 7)
        alice[n >> 3] = np.uint8((wa << pad) & 255)
        bob[cap + (n >> 3)] = np.uint8((wb << pad) & 255)
    if pack_classes and n & 3:
        alice[nb8 + (n >> 2)] = np.uint8((wc << (2 * (4 - (n & 3)))) & 255)
    if k < 0:
        # some gap took three bytes or more: encode again, exactly
        gaps = _varint_gaps(pulse_index, prev0)
        k = gaps.shape[0]
        out = np.empty(k + nb8, dtype=np.uint8)
        out[:k] = gaps
        out[k:] = bob[cap:]
    else:
        out = bob[: k + nb8]
        out[k:] = bob[cap:]
    return (
        alice_key[:j], bob_key[:j], key_counts, test_counts, test_errors,
        alice_test[:t], bob_test[:t], out, alice, k,
    )


@numba.njit(cache=True, nogil=True)
def _varint_gaps(pulse_index: np.ndarray, prev0: int = 0) -> np.ndarray:
    # Gaps between detected pulse indices as LEB128 varints (7 bits per byte, high bit =
    # "more"): 1-2 bytes per detection instead of 8, so less to send and to authenticate.
    n = pulse_index.shape[0]
    out = np.empty(10 * n, dtype=np.uint8)
    k = 0
    prev = prev0
    for i in range(n):
        g = pulse_index[i] - prev
        prev = pulse_index[i]
        while g >= 128:
            out[k] = np.uint8((g & 127) | 128)
            g >>= 7
            k += 1
        out[k] = np.uint8(g)
        k += 1
    return out[:k]


def decode_gaps(data: bytes, count: int) -> np.ndarray:
    """Inverse of the pulse-index encoding of Bob's announcement (for tests and receivers)."""
    out = np.empty(count, dtype=np.int64)
    value = shift = i = 0
    pos = 0
    for byte in data:
        value |= (byte & 127) << shift
        shift += 7
        if not byte & 128:
            pos += value
            out[i] = pos
            i += 1
            value = shift = 0
            if i == count:
                break
    return out[:i]


def _pack(arr: np.ndarray) -> bytes:
    return bytes(np.packbits(arr.astype(np.uint8, copy=False)).tobytes())


#: Blocks with at least this many detections are sifted as two halves on two threads.
PARALLEL_MIN_DETECTIONS = 1 << 20
_POOL: list[ThreadPoolExecutor] = []


def _pool() -> ThreadPoolExecutor:
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="qkd-sift"))
    return _POOL[0]


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def sift(records: DetectionRecords) -> SiftedBlock:
    """Sift one block of detection records (Bennett & Brassard 1984; Lim et al. 2014).

    Returns the Z-basis sifted key of both parties and the per-class counts of the key and
    test bases. Units: bits and counts. Pure; the messages are built, not sent.
    """
    K = records.pulses_sent.shape[0]
    cols = (
        records.pulse_index, records.alice_basis, records.bob_basis, records.alice_bit,
        records.bob_bit, records.alice_class,
    )
    n = records.detections
    # Long blocks: two halves on two cores (the kernel releases the GIL), cut at a
    # multiple of 8 rows so that the packed bases and classes of the halves just
    # concatenate; the second half's first gap counts from the first half's last pulse.
    cut = (n // 2) & ~7 if n >= PARALLEL_MIN_DETECTIONS else n
    parts = [(0, cut, 0)] + ([(cut, n, int(records.pulse_index[cut - 1]))] if cut < n else [])

    def run(part: tuple[int, int, int]) -> tuple:
        lo, hi, prev0 = part
        idx, ab, bb, abit, bbit, cls = (c[lo:hi] for c in cols)
        return _sift_kernel(idx, ab, bb, abit, bbit, cls, K, K <= 4, prev0)

    if len(parts) == 1:
        res = [run(parts[0])]
    else:
        future = _pool().submit(run, parts[1])
        res = [run(parts[0]), future.result()]
    alice_key = _cat([r[0] for r in res])
    bob_key = _cat([r[1] for r in res])
    key_counts = sum(r[2] for r in res)
    test_counts = sum(r[3] for r in res)
    test_errors = sum(r[4] for r in res)
    alice_t = _cat([r[5] for r in res])
    bob_t = _cat([r[6] for r in res])
    # Public messages. Pulse indices are sent as varint gaps, bases and bits packed eight
    # to a byte, intensity classes four to a byte (two bits each) when there are <= 4.
    # Bob: all gaps, then all bases; Alice: all bases, then all classes.
    bob_announce = b"".join(
        [r[7][: r[9]] for r in res] + [r[7][r[9]:] for r in res]
    )
    bases = [r[8][: (hi - lo + 7) >> 3] for r, (lo, hi, _) in zip(res, parts, strict=True)]
    classes = [r[8][(hi - lo + 7) >> 3 :] for r, (lo, hi, _) in zip(res, parts, strict=True)]
    alice_answer = b"".join(bases + classes)
    if K > 4:
        alice_answer += records.alice_class.tobytes()
    alice_test = _pack(alice_t)
    bob_test = _pack(bob_t)
    return SiftedBlock(
        alice_key=alice_key,
        bob_key=bob_key,
        key_counts=key_counts,
        test_counts=test_counts,
        test_errors=test_errors,
        pulses_sent=records.pulses_sent.copy(),
        intensities=records.intensities,
        protocol=records.protocol,
        detections=records.detections,
        messages=(
            ("bob", bob_announce),
            ("alice", alice_answer),
            ("alice", alice_test),
            ("bob", bob_test),
        ),
    )
