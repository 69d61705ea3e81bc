"""Sifting: keep the pulses where Alice and Bob used the same basis.

Hazmat layer. The key comes from the Z basis (both chose Z); every X-basis (test) bit is
announced, so the test errors per intensity class are known exactly — this is the protocol
of Lim et al., PRA 89, 022307 (2014), with their X (key) basis called Z here.

The public messages sifting needs are built here as bytes (so the pipeline can authenticate
them and count their length): Bob announces which pulses he detected and his bases; Alice
answers with her bases and intensity classes; both announce their test-basis bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from qkdnet.postprocessing._pools import shared_pool
from qkdnet.quantum.records import DetectionRecords

__all__ = ["SiftedBlock", "sift"]


@dataclass(frozen=True, eq=False)
class SiftedBlock:
    """The sifted key of one block and the counts parameter estimation needs.

    ``alice_key``/``bob_key``: Z-basis bits (uint8 0/1) where both chose Z, all intensity
    classes, in pulse order. ``key_counts[k]`` = n_Z,k (sifted key bits of class k);
    ``test_counts[k]`` = n_X,k and ``test_errors[k]`` = m_X,k (announced test bits and their
    errors). ``messages``: the public messages, as (sender, bytes or a read-only
    memoryview of the sifting buffers), in order.
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
    messages: tuple[tuple[str, bytes | memoryview], ...]

    @property
    def sifted_bits(self) -> int:
        """Length of the sifted key, bits."""
        return int(self.alice_key.shape[0])


def _compress_table() -> np.ndarray:
    # PEXT8[m << 8 | v]: the bits of v where m has a one, packed to the low end (the
    # BMI2 pext instruction on eight bits; a table, since Numba has no portable pext).
    m = np.arange(256)[:, None]
    v = np.arange(256)[None, :]
    out = np.zeros((256, 256), dtype=np.int64)
    pos = np.zeros((256, 1), dtype=np.int64)
    for r in range(8):
        sel = (m >> r) & 1
        out |= (((v >> r) & 1) * sel) << pos
        pos = pos + sel
    return out.astype(np.uint8).reshape(-1)


#: PEXT8[m << 8 | v] = the bits of v selected by m, packed low (see _compress_table).
PEXT8 = _compress_table()
#: SPREAD8[b]: bit r of b moved to the lowest bit of byte r (eight 0/1 bytes in a word).
SPREAD8 = np.array(
    [sum(((b >> r) & 1) << (8 * r) for r in range(8)) for b in range(256)], dtype=np.uint64
)
_ONES = np.uint64(0x0101010101010101)
_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
# (w * _GATHER_LSB) >> 56 gathers the low bits of the eight bytes of w (each 0 or 1) into
# one byte, row r at bit r; _GATHER_MSB puts row r at bit 7 - r (numpy.packbits order);
# _GATHER_CLS packs four 2-bit values from the low bytes of a 32-bit word into bits 24-31,
# first in the high bits. The partial products land on distinct bits, so nothing carries.
_GATHER_LSB = np.uint64(0x0102040810204080)
_GATHER_MSB = np.uint64(0x8040201008040201)
_GATHER_CLS = np.uint64(0x40100401)


#: Whether the kernel compresses bytes with BMI2 ``pext`` (one instruction) rather than
#: the PEXT8/SPREAD8 tables: x86-64 with BMI2, except AMD Zen 1 and 2, where pext is
#: microcoded and slower than the tables. QKDNET_SOFT_PEXT=1 forces the tables (the tests
#: use it, with their own NUMBA_CACHE_DIR, to check that path on x86).
HAS_FAST_PEXT: bool = (
    bool(llvm.get_host_cpu_features().get("bmi2", False))
    and llvm.get_host_cpu_name() not in ("znver1", "znver2")
    and os.environ.get("QKDNET_SOFT_PEXT", "") != "1"
)


@intrinsic
def _pext(typingctx, value, mask):  # noqa: ANN001 - Numba's intrinsic protocol
    """BMI2 ``pext``: the bits of ``value`` where ``mask`` is 1, packed to the low end."""
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001
        i64 = ir.IntType(64)
        fnty = ir.FunctionType(i64, [i64, i64])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.bmi.pext.64")
        return builder.call(fn, [args[0], args[1]])

    return sig, codegen


if HAS_FAST_PEXT:

    @numba.njit(cache=True, inline="always")
    def _compress_bytes(v: np.uint64, keep: np.uint64) -> np.uint64:
        # the bytes of v (each 0 or 1) where keep's byte is 1, moved to the front
        return _pext(v, keep * np.uint64(255))  # type: ignore[call-arg]

else:

    @numba.njit(cache=True, inline="always")
    def _compress_bytes(v: np.uint64, keep: np.uint64) -> np.uint64:
        # the same through the tables: gather each word's byte flags into 8 bits, compress,
        # spread back to bytes
        u56 = np.uint64(56)
        k8 = ((keep * _GATHER_LSB) >> u56) << np.uint64(8)
        return SPREAD8[PEXT8[k8 | ((v * _GATHER_LSB) >> u56)]]


@intrinsic
def _store_unaligned(typingctx, arr, index, value):  # noqa: ANN001 - Numba's protocol
    """Store the integer ``value`` (its whole width) at byte ``index`` of the uint8 array
    ``arr``, unaligned and without a bounds check: one store where byte-wise code needs
    eight (sifting is bound by stores)."""
    if not (isinstance(arr, types.Array) and arr.dtype == types.uint8
            and isinstance(value, types.Integer)):
        return None
    sig = types.void(arr, types.intp, value)

    def codegen(context, builder, signature, args):  # noqa: ANN001
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        ptr = builder.gep(ary.data, [args[1]])
        vty = context.get_value_type(signature.args[2])
        builder.store(args[2], builder.bitcast(ptr, vty.as_pointer()), align=1)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(cache=True, inline="always")
def _plane_add(
    acc: tuple[np.uint64, np.uint64, np.uint64, np.uint64], w: np.uint64, b0: np.uint64,
    b1: np.uint64, b01: np.uint64,
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    # byte-wise counts of the rows flagged in w (bytes 0/1): all of them, those whose class
    # has bit 0 set, bit 1 set, both bits set (classes < 4 follow from the four)
    return (acc[0] + w, acc[1] + (w & b0), acc[2] + (w & b1), acc[3] + (w & b01))


@numba.njit(cache=True, inline="always")
def _byte_total(x: np.uint64) -> int:
    # the sum of the eight bytes of x (each up to 255; the sum fits 16 bits)
    m = np.uint64(0x00FF00FF00FF00FF)
    x = (x & m) + ((x >> np.uint64(8)) & m)
    return int((x * np.uint64(0x0001000100010001)) >> np.uint64(48))


@numba.njit(cache=True, inline="always")
def _put_varint(buf: np.ndarray, k: int, g: int) -> int:
    # g >= 0 as LEB128 (7 bits a byte, low first, high bit = "more") at buf[k]; new cursor
    while g >= 128:
        buf[k] = np.uint8((g & 127) | 128)
        g >>= 7
        k += 1
    buf[k] = np.uint8(g)
    return k + 1


#: Pulse indices per chunk of :func:`_encode_gaps`.
_GAP_CHUNK = 64


@numba.njit(cache=True, nogil=True)
def _encode_gaps(pulse_index: np.ndarray, prev0: int, out: np.ndarray, cap: int) -> int:
    # Gaps between consecutive detected pulse indices (the first from prev0) as LEB128
    # varints into out[:cap]; returns the bytes written, or -1 if they would not fit.
    # A chunk whose gaps are all below 128 (most of them on short links) is two loops
    # the compiler vectorises: the OR of the gaps, then one byte per gap (1.6 ms instead
    # of 3.5 ms for 4e6 rows); other chunks take one or two bytes per gap without a
    # branch on which (at 50 km the gaps straddle 128, and such a branch would mispredict
    # every other row), or the general varint.
    n = pulse_index.shape[0]
    if n == 0:
        return 0
    if cap < 10:
        return -1
    k = _put_varint(out, 0, pulse_index[0] - prev0)
    i = 1
    while i + _GAP_CHUNK <= n:
        # slices, so that the loops index from 0 (no negative-index fix-ups in them)
        before = pulse_index[i - 1 : i - 1 + _GAP_CHUNK]
        after = pulse_index[i : i + _GAP_CHUNK]
        orr = np.int64(0)
        for r in range(_GAP_CHUNK):
            orr |= after[r] - before[r]
        if orr < 128:  # gaps are >= 0, so this is "all below 128"
            if k + _GAP_CHUNK > cap:
                return -1
            dst = out[k : k + _GAP_CHUNK]
            for r in range(_GAP_CHUNK):
                dst[r] = np.uint8(after[r] - before[r])
            k += _GAP_CHUNK
        elif orr < 16384:
            if k + 2 * _GAP_CHUNK + 1 > cap:
                return -1
            for r in range(_GAP_CHUNK):
                g = after[r] - before[r]
                more = int(g >= 128)
                v2 = np.uint16((g & 127) | (more << 7) | ((g >> 7) << 8))
                _store_unaligned(out, k, v2)  # type: ignore[call-arg]
                k += 1 + more
        else:
            for r in range(_GAP_CHUNK):
                if k + 10 > cap:
                    return -1
                k = _put_varint(out, k, after[r] - before[r])
        i += _GAP_CHUNK
    for r in range(i, n):
        if k + 10 > cap:
            return -1
        k = _put_varint(out, k, pulse_index[r] - pulse_index[r - 1])
    return k


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
    keys: np.ndarray,
    bob: np.ndarray,
    alice: np.ndarray,
) -> tuple[
    np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
    np.ndarray, np.ndarray, int,
]:
    # One pass over the detections does the sifting, the counts and most of the public
    # messages (Bob's varint gaps and packed bases, Alice's packed bases and classes):
    # sifting is memory-bound (a block at 50 km holds four detections per sifted bit), so
    # every extra pass over the columns, temporary or copy costs about as much as the
    # sifting itself. Eight rows at a time: the uint8 columns are read as 64-bit words
    # (the caller passes them contiguous and 8-byte aligned), and each of the four
    # outputs gets one 8-byte store per eight rows instead of one store per row — a
    # row-at-a-time pass was bound by its six stores per row.
    n = a_basis.shape[0]
    key_counts = np.zeros(n_classes, dtype=np.int64)
    test_counts = np.zeros(n_classes, dtype=np.int64)
    test_errors = np.zeros(n_classes, dtype=np.int64)
    # Output buffers, from the caller (see _buffers): ``keys`` rows are Alice's and Bob's
    # key bits and test bits; the caller gets views.
    alice_key = keys[0]
    bob_key = keys[1]
    alice_test = keys[2]
    bob_test = keys[3]
    nb8 = (n + 7) >> 3
    # Bob (``bob``): gaps between detected pulse indices as LEB128 varints (7 bits a byte,
    # high bit = "more": 1-2 bytes per detection instead of 8) in the first ``cap`` bytes,
    # then his bases packed MSB first. Two bytes per gap is the first guess; a longer
    # message is redone exactly below. Alice (``alice``): her bases packed MSB first, then
    # the classes two bits each, first in the high bits (when there are at most four).
    cap = 2 * n + 16
    n8 = n >> 3
    w_ab = a_basis[: 8 * n8].view(np.uint64)
    w_bb = b_basis[: 8 * n8].view(np.uint64)
    w_abit = a_bit[: 8 * n8].view(np.uint64)
    w_bbit = b_bit[: 8 * n8].view(np.uint64)
    w_cls = a_class[: 8 * n8].view(np.uint64)
    u7 = np.uint64(7)
    u24 = np.uint64(24)
    u32 = np.uint64(32)
    u56 = np.uint64(56)
    low32 = np.uint64(0xFFFFFFFF)
    byte = np.uint64(255)
    one = np.uint64(1)
    zero = np.uint64(0)
    acc_k = (zero, zero, zero, zero)  # see _plane_add: key rows, test rows, test errors
    acc_t = (zero, zero, zero, zero)
    acc_e = (zero, zero, zero, zero)
    planes = np.zeros((3, 4), dtype=np.int64)  # their totals
    steps = 0
    j = 0
    t = 0
    # Bob's gaps first, in a pass of their own over the pulse indices (chunks the
    # compiler vectorises); -1 if they need more than ``cap`` bytes (redone below)
    k = _encode_gaps(pulse_index, prev0, bob, cap)
    for r8 in range(n8):
        base = 8 * r8
        # --- eight rows as words: bytes 0/1 (bases, bits), classes < 256
        A = w_ab[r8]
        B = w_bb[r8]
        same = ~(A ^ B) & _ONES
        Z = same & ~A  # both chose Z (0): key
        X = same & A  # both chose X (1): test
        abits = w_abit[r8]
        bbits = w_bbit[r8]
        XE = X & (abits ^ bbits)
        alice[r8] = np.uint8((A * _GATHER_MSB) >> u56)
        bob[cap + r8] = np.uint8((B * _GATHER_MSB) >> u56)
        C = w_cls[r8]
        if pack_classes:
            alice[nb8 + 2 * r8] = np.uint8((((C & low32) * _GATHER_CLS) >> u24) & byte)
            alice[nb8 + 2 * r8 + 1] = np.uint8((((C >> u32) * _GATHER_CLS) >> u24) & byte)
        if pack_classes:
            # classes < 4: per-byte counters by the classes' two bit planes, in registers,
            # added up every 255 steps (a byte holds at most 255)
            b0 = C & _ONES
            b1 = (C >> one) & _ONES
            b01 = b0 & b1
            acc_k = _plane_add(acc_k, Z, b0, b1, b01)
            acc_t = _plane_add(acc_t, X, b0, b1, b01)
            acc_e = _plane_add(acc_e, XE, b0, b1, b01)
            steps += 1
            if steps == 255:
                for q in range(4):
                    planes[0, q] += _byte_total(acc_k[q])
                    planes[1, q] += _byte_total(acc_t[q])
                    planes[2, q] += _byte_total(acc_e[q])
                acc_k = (zero, zero, zero, zero)
                acc_t = (zero, zero, zero, zero)
                acc_e = (zero, zero, zero, zero)
                steps = 0
        elif n_classes <= 8:
            for c in range(n_classes):
                d = C ^ (np.uint64(c) * _ONES)
                eq = ~(((d & _LOW7) + _LOW7) | d | _LOW7) >> u7  # 1 in bytes equal to c
                key_counts[c] += int(((Z & eq) * _ONES) >> u56)
                test_counts[c] += int(((X & eq) * _ONES) >> u56)
                test_errors[c] += int(((XE & eq) * _ONES) >> u56)
        else:
            for r in range(8):
                sh = np.uint64(8 * r)
                uc = np.uint64(a_class[base + r])
                key_counts[uc] += int((Z >> sh) & one)
                test_counts[uc] += int((X >> sh) & one)
                test_errors[uc] += int((XE >> sh) & one)
        # the kept rows' bits, compressed to the front of a word and stored at the cursor
        _store_unaligned(alice_key, j, _compress_bytes(abits, Z))  # type: ignore[call-arg]
        _store_unaligned(bob_key, j, _compress_bytes(bbits, Z))
        _store_unaligned(alice_test, t, _compress_bytes(abits, X))
        _store_unaligned(bob_test, t, _compress_bytes(bbits, X))
        j += int((Z * _ONES) >> u56)
        t += int((X * _ONES) >> u56)
    if pack_classes:
        for q in range(4):
            planes[0, q] += _byte_total(acc_k[q])
            planes[1, q] += _byte_total(acc_t[q])
            planes[2, q] += _byte_total(acc_e[q])
        for stat, out in enumerate((key_counts, test_counts, test_errors)):
            both = planes[stat, 3]
            only0 = planes[stat, 1] - both  # class 1
            only1 = planes[stat, 2] - both  # class 2
            per_class = (planes[stat, 0] - only0 - only1 - both, only0, only1, both)
            for c in range(n_classes):
                out[c] += per_class[c]
    # the last n % 8 rows, one at a time
    wa = 0
    wb = 0
    wc = 0
    for i in range(8 * n8, n):
        ab = a_basis[i]
        bb = b_basis[i]
        c = a_class[i]
        wa = (wa << 1) | int(ab & 1)
        wb = (wb << 1) | int(bb & 1)
        if pack_classes:
            wc = (wc << 2) | int(c & 3)
            if (i & 3) == 3:
                alice[nb8 + (i >> 2)] = np.uint8(wc & 255)
        same_ = int(ab == bb)
        z = same_ & int(ab == 0)
        x = same_ - z
        ai = a_bit[i]
        bi = b_bit[i]
        alice_key[j] = ai
        bob_key[j] = bi
        alice_test[t] = ai
        bob_test[t] = bi
        j += z
        t += x
        key_counts[c] += z
        test_counts[c] += x
        test_errors[c] += x & int(ai != bi)
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
        k = _put_varint(out, k, g)
    return out[:k]


def decode_gaps(data: bytes | memoryview, count: int) -> np.ndarray:
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


def _readonly(arr: np.ndarray) -> memoryview:
    # a read-only view of a buffer nobody else holds: it cannot change after it is tagged
    arr.flags.writeable = False
    return arr.data


def _pack(arr: np.ndarray) -> bytes:
    return bytes(np.packbits(arr.astype(np.uint8, copy=False)).tobytes())


#: Blocks with at least this many detections are sifted as two halves on two threads.
PARALLEL_MIN_DETECTIONS = 1 << 20


def _buffers(n: int, pack_classes: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # The kernel's outputs for n rows, sized for the worst case (untouched pages cost
    # nothing) plus the seven bytes an eight-byte store may write past the last row kept.
    # Allocated here rather than in the kernel: NumPy asks for transparent huge pages on
    # large arrays, and at 10^7 sifted bits (4e7 rows, ~150 MB touched) the 4 KiB page
    # faults of kernel-allocated buffers were ~40 % of the sifting time.
    nb8 = (n + 7) >> 3
    nc4 = (n + 3) >> 2 if pack_classes else 0
    return (
        np.empty((4, n + 8), dtype=np.uint8),
        np.empty(2 * n + 16 + nb8, dtype=np.uint8),
        np.empty(nb8 + nc4, dtype=np.uint8),
    )


def _words_ready(col: np.ndarray) -> np.ndarray:
    # The kernel reads the uint8 columns as 64-bit words: contiguous and 8-byte aligned
    # (a fresh NumPy array is; a view into someone else's buffer may not be).
    if col.flags.c_contiguous and col.ctypes.data % 8 == 0:
        return col
    return col.copy()  # NumPy allocates at least 16-byte aligned


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def sift(records: DetectionRecords, *, threads: int = 2) -> SiftedBlock:
    """Sift one block of detection records (Bennett & Brassard 1984; Lim et al. 2014).

    Returns the Z-basis sifted key of both parties and the per-class counts of the key and
    test bases. Units: bits and counts. Pure; the messages are built, not sent.
    ``threads``: 2 sifts a long block (>= PARALLEL_MIN_DETECTIONS rows) as two halves on
    two threads; 1 keeps it on the calling thread. The result is the same.
    """
    K = records.pulses_sent.shape[0]
    cols = (records.pulse_index,) + tuple(
        _words_ready(c) for c in (
            records.alice_basis, records.bob_basis, records.alice_bit, records.bob_bit,
            records.alice_class,
        )
    )
    n = records.detections
    # Long blocks: two halves on two cores (the kernel releases the GIL), cut at a
    # multiple of 8 rows so that the packed bases and classes of the halves just
    # concatenate; the second half's first gap counts from the first half's last pulse.
    cut = (n // 2) & ~7 if n >= PARALLEL_MIN_DETECTIONS and threads > 1 else n
    parts = [(0, cut, 0)] + ([(cut, n, int(records.pulse_index[cut - 1]))] if cut < n else [])

    def run(part: tuple[int, int, int]) -> tuple:
        lo, hi, prev0 = part
        idx, ab, bb, abit, bbit, cls = (c[lo:hi] for c in cols)
        return _sift_kernel(
            idx, ab, bb, abit, bbit, cls, K, K <= 4, prev0, *_buffers(hi - lo, K <= 4)
        )

    if len(parts) == 1:
        res = [run(parts[0])]
    else:
        future = shared_pool("qkd-sift", 1).submit(run, parts[1])
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
    # In one piece, the kernel's buffers already hold each message whole (Bob's gaps then
    # bases, Alice's bases then classes): they are handed over as read-only views, not
    # copied into bytes (~5 MB per 10^6 sifted bits; the authenticated channel reads a
    # read-only buffer in place).
    bob_announce: bytes | memoryview
    alice_answer: bytes | memoryview
    if len(res) == 1:
        bob_announce = _readonly(res[0][7])
    else:
        bob_announce = b"".join(
            [r[7][: r[9]] for r in res] + [r[7][r[9]:] for r in res]
        )
    if len(res) == 1 and K <= 4:
        alice_answer = _readonly(res[0][8])
    else:
        bases = [r[8][: (hi - lo + 7) >> 3] for r, (lo, hi, _) in zip(res, parts, strict=True)]
        classes = [
            r[8][(hi - lo + 7) >> 3 :] for r, (lo, hi, _) in zip(res, parts, strict=True)
        ]
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
