"""Hazmat: carry-less (GF(2)[z]) arithmetic on packed 64-bit words, in Numba.

Private helpers of verification, amplification and authentication. Bits are packed
little-endian: bit ``k`` of a bit string is bit ``k % 64`` of word ``k // 64``, so that a
word is a polynomial over GF(2) whose coefficient of ``z^b`` is bit ``b``.

* ``clmul(a, b)`` / ``clmul2x2``: carry-less products of words / 128-bit digits. They
  compile to the x86 ``PCLMULQDQ`` instruction (Gueron & Kounavis, "Intel carry-less
  multiplication instruction and its usage for computing the GCM mode", Intel white paper
  323640) when the CPU has it, and to a branch-free shift-and-xor loop otherwise (same
  result, much slower).
* ``gf64_mul``: multiplication in GF(2^64) = GF(2)[z]/(z^64 + z^4 + z^3 + z + 1).
* ``poly_hash``: Horner evaluation of a polynomial over GF(2^64) (universal hashing,
  Carter & Wegman 1979; Wegman & Carter 1981).
* ``tmvp_blocks``: Toeplitz-matrix-vector product over GF(2) by the two-way Karatsuba
  split for Toeplitz matrices (Fan & Hasan, IEEE Trans. Comput. 56, 224, 2007), with a
  base case computed with ``clmul`` word by word, or, where the CPU has 512-bit
  VPCLMULQDQ, as the middle columns of a digit product four columns at a time.
* ``clmul_dot8``: the unreduced sum of the carry-less products of message words (read in
  place, any alignment) with a table of key powers, 8 words per 512-bit VPCLMULQDQ pair
  (or per four 128-bit PCLMULQDQ pairs): the inner step of the polynomial hash of
  authentication.
* ``cyclic_products_range`` / ``cyclic_product``: products in GF(2)[x]/(x^T - 1) by
  Schönhage's ternary FFT (Acta Informatica 7, 395, 1977), pointwise products by
  Karatsuba (``_kmul``, leaves by 512-bit VPCLMULQDQ four columns at a time where the CPU
  has it); one operand's transform shared by several products, only a bit range gathered.

Performance notes (measured): loops over words use unsigned indices, because Numba's
negative-index wrap-around on signed indices stops LLVM from vectorising them; the
Karatsuba recursions run on explicit stacks, because Numba cannot cache self-recursive
functions; arrays are not handed to small inlined helpers in hot paths, because Numba
then keeps atomic reference-count calls around them (~30 ns a call); large work arrays
are reused per thread (``_workspace``), because fresh ones page-fault.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Whether the host CPU has PCLMULQDQ (x86-64 since 2010; not ARM). Setting the environment
#: variable QKDNET_SOFT_CLMUL=1 forces the portable path (the tests use it to check that
#: path on x86; give Numba its own NUMBA_CACHE_DIR then).
HAS_PCLMUL: bool = bool(llvm.get_host_cpu_features().get("pclmul", False)) and (
    os.environ.get("QKDNET_SOFT_CLMUL", "") != "1"
)

#: z^64 = z^4 + z^3 + z + 1 in GF(2^64): the low-weight irreducible pentanomial
#: (Seroussi, "Table of low-weight binary irreducible polynomials", HP Labs 98-135, 1998).
GF64_POLY_LOW = 0x1B


@intrinsic
def _pclmul(typingctx, a, b):  # noqa: ANN001 - Numba's intrinsic protocol
    """(lo, hi) of the carry-less product of two uint64, via llvm.x86.pclmulqdq."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001
        i64 = ir.IntType(64)
        vec = ir.VectorType(i64, 2)
        zero = ir.Constant(ir.IntType(32), 0)
        one = ir.Constant(ir.IntType(32), 1)
        undef = ir.Constant(vec, ir.Undefined)
        va = builder.insert_element(undef, args[0], zero)
        vb = builder.insert_element(undef, args[1], zero)
        fnty = ir.FunctionType(vec, [vec, vec, ir.IntType(8)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.pclmulqdq")
        r = builder.call(fn, [va, vb, ir.Constant(ir.IntType(8), 0)])
        lo = builder.extract_element(r, zero)
        hi = builder.extract_element(r, one)
        return context.make_tuple(builder, signature.return_type, [lo, hi])

    return sig, codegen


@intrinsic
def _pclmul2x2(typingctx, a0, a1, b0, b1):  # noqa: ANN001 - Numba's intrinsic protocol
    """(a0 + a1 z^64)(b0 + b1 z^64) as 4 words, with 4 PCLMULQDQs on two vector loads."""
    sig = types.UniTuple(types.uint64, 4)(types.uint64, types.uint64, types.uint64,
                                          types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001
        i64 = ir.IntType(64)
        vec = ir.VectorType(i64, 2)
        c0 = ir.Constant(ir.IntType(32), 0)
        c1 = ir.Constant(ir.IntType(32), 1)
        undef = ir.Constant(vec, ir.Undefined)
        va = builder.insert_element(builder.insert_element(undef, args[0], c0), args[1], c1)
        vb = builder.insert_element(builder.insert_element(undef, args[2], c0), args[3], c1)
        fnty = ir.FunctionType(vec, [vec, vec, ir.IntType(8)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.pclmulqdq")

        def pcl(imm: int) -> ir.Instruction:
            return builder.call(fn, [va, vb, ir.Constant(ir.IntType(8), imm)])

        p00 = pcl(0x00)  # a0 b0
        p11 = pcl(0x11)  # a1 b1
        mid = builder.xor(pcl(0x10), pcl(0x01))  # a0 b1 + a1 b0
        r0 = builder.extract_element(p00, c0)
        r1 = builder.xor(builder.extract_element(p00, c1), builder.extract_element(mid, c0))
        r2 = builder.xor(builder.extract_element(p11, c0), builder.extract_element(mid, c1))
        r3 = builder.extract_element(p11, c1)
        return context.make_tuple(builder, signature.return_type, [r0, r1, r2, r3])

    return sig, codegen


#: Whether the host has 512-bit VPCLMULQDQ (AVX-512 with VPCLMULQDQ: Intel Ice Lake and
#: later, AMD Zen 4 and later): Karatsuba's base case then multiplies four digit pairs
#: per instruction. Off with QKDNET_SOFT_CLMUL=1 like the 128-bit path, and alone with
#: QKDNET_NO_VPCLMUL512=1 (the tests use it to run the 128-bit path on hosts that have both).
HAS_VPCLMUL512: bool = (
    HAS_PCLMUL
    and all(
        bool(llvm.get_host_cpu_features().get(f, False)) for f in ("vpclmulqdq", "avx512f")
    )
    and os.environ.get("QKDNET_NO_VPCLMUL512", "") != "1"
)


def _cols4_codegen(store_words: int):  # noqa: ANN202 - Numba's intrinsic protocol
    """Code for ``_cols4`` (``store_words`` = 8) and ``_cols4_half`` (4)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        v8 = ir.VectorType(i64, 8)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        a_off, b_off, c_off, cnt, carry0, carry1 = args[1:]

        def shuffle(v: ir.Value, w: ir.Value, idx: list[int]) -> ir.Instruction:
            mask = ir.Constant(ir.VectorType(i32, len(idx)), [ir.Constant(i32, i) for i in idx])
            return builder.shuffle_vector(v, w, mask)

        def ptr(off: ir.Value, ty: ir.Type) -> ir.Instruction:
            return builder.bitcast(builder.gep(ary.data, [off]), ty.as_pointer())

        fnty = ir.FunctionType(v8, [v8, v8, ir.IntType(8)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.x86.pclmulqdq.512")
        zero8 = ir.Constant(v8, [ir.Constant(i64, 0)] * 8)
        # accumulators (promoted to registers by LLVM): a0 b0, a1 b1 and a0 b1 + a1 b0 of
        # the four columns, one 128-bit lane per column
        acc00 = cgutils.alloca_once_value(builder, zero8)
        acc11 = cgutils.alloca_once_value(builder, zero8)
        accm = cgutils.alloca_once_value(builder, zero8)
        two = ir.Constant(i64, 2)
        with cgutils.for_range(builder, cnt) as loop:
            step2 = builder.mul(loop.index, two)
            va2 = builder.load(ptr(builder.add(a_off, step2), ir.VectorType(i64, 2)), align=8)
            va = shuffle(va2, va2, [0, 1, 0, 1, 0, 1, 0, 1])  # digit a_i in every lane
            vb = builder.load(ptr(builder.sub(b_off, step2), v8), align=8)

            def pcl(imm: int) -> ir.Instruction:
                return builder.call(fn, [va, vb, ir.Constant(ir.IntType(8), imm)])

            builder.store(builder.xor(builder.load(acc00), pcl(0x00)), acc00)
            builder.store(builder.xor(builder.load(acc11), pcl(0x11)), acc11)
            builder.store(builder.xor(builder.load(accm), builder.xor(pcl(0x01), pcl(0x10))),
                          accm)
        p00 = builder.load(acc00)
        p11 = builder.load(acc11)
        mid = builder.load(accm)
        # column q's 256-bit sum sits at words 2q .. 2q+3: a0 b0 at +0, the middle at +1,
        # a1 b1 at +2; the top two words of column 3 are carried to the next block
        s1 = shuffle(zero8, mid, [0, 8, 9, 10, 11, 12, 13, 14])
        s2 = shuffle(zero8, p11, [0, 1, 8, 9, 10, 11, 12, 13])
        cv = builder.insert_element(zero8, carry0, ir.Constant(i32, 0))
        cv = builder.insert_element(cv, carry1, ir.Constant(i32, 1))
        v = builder.xor(builder.xor(p00, s1), builder.xor(s2, cv))
        if store_words == 8:
            builder.store(v, ptr(c_off, v8), align=8)
        else:
            builder.store(shuffle(v, v, [0, 1, 2, 3]), ptr(c_off, ir.VectorType(i64, 4)),
                          align=8)
        n0 = builder.xor(builder.extract_element(mid, ir.Constant(i32, 7)),
                         builder.extract_element(p11, ir.Constant(i32, 6)))
        n1 = builder.extract_element(p11, ir.Constant(i32, 7))
        return context.make_tuple(builder, signature.return_type, [n0, n1])

    return codegen


@intrinsic
def _cols4(typingctx, buf, a_off, b_off, c_off, cnt, carry0, carry1):  # noqa: ANN001
    """Four product columns k .. k+3 of a Karatsuba leaf, by 512-bit VPCLMULQDQ.

    Step s = 0 .. cnt-1 multiplies digit a_(i0+s) (two words at ``buf[a_off + 2s]``,
    broadcast to the four lanes) by the four digits at ``buf[b_off - 2s:]`` (b_(k-i0-s) ..
    b_(k-i0-s+3), zero-padded outside b), so that lane q accumulates column k + q without
    any sum across lanes. The 8 words of digits k .. k+3 are stored at ``buf[c_off:]``
    (with the carry of the previous block added) and the 2 words that spill into digit
    k + 4 are returned as the next carry. No bounds check.
    """
    u = types.uint64
    return types.UniTuple(u, 2)(buf, u, u, u, u, u, u), _cols4_codegen(8)


@intrinsic
def _cols4_half(typingctx, buf, a_off, b_off, c_off, cnt, carry0, carry1):  # noqa: ANN001
    """``_cols4`` storing only digits k, k+1 (the last block of an odd number of digits)."""
    u = types.uint64
    return types.UniTuple(u, 2)(buf, u, u, u, u, u, u), _cols4_codegen(4)


@njit(cache=True, inline="always")
def clmul_soft(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Carry-less product of two words by shift-and-xor (portable reference)."""
    a = np.uint64(a)
    b = np.uint64(b)
    lo = np.uint64(0)
    hi = np.uint64(0)
    one = np.uint64(1)
    for i in range(64):
        # mask is all ones when bit i of b is set: branch-free, so timing does not depend
        # on the (secret) operand.
        mask = np.uint64(0) - ((b >> np.uint64(i)) & one)
        lo ^= (a << np.uint64(i)) & mask
        if i > 0:
            hi ^= (a >> np.uint64(64 - i)) & mask
    return lo, hi


if HAS_PCLMUL:

    @njit(cache=True, inline="always")
    def clmul(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
        """Carry-less product (lo, hi) of two words (hardware PCLMULQDQ)."""
        return _pclmul(np.uint64(a), np.uint64(b))  # type: ignore[call-arg]

else:  # pragma: no cover - only on CPUs without PCLMULQDQ
    clmul = clmul_soft


@njit(cache=True, inline="always")
def clmul2x2_soft(a0: np.uint64, a1: np.uint64, b0: np.uint64,
                  b1: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
    """(a0 + a1 z^64)(b0 + b1 z^64), portable."""
    l00, h00 = clmul_soft(a0, b0)
    l11, h11 = clmul_soft(a1, b1)
    l01, h01 = clmul_soft(a0, b1)
    l10, h10 = clmul_soft(a1, b0)
    return l00, h00 ^ l01 ^ l10, l11 ^ h01 ^ h10, h11


if HAS_PCLMUL:

    @njit(cache=True, inline="always")
    def clmul2x2(a0: np.uint64, a1: np.uint64, b0: np.uint64,
                 b1: np.uint64) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64]:
        """(a0 + a1 z^64)(b0 + b1 z^64) as 4 words (hardware PCLMULQDQ)."""
        return _pclmul2x2(a0, a1, b0, b1)  # type: ignore[call-arg]

else:  # pragma: no cover - only on CPUs without PCLMULQDQ
    clmul2x2 = clmul2x2_soft


@njit(cache=True, inline="always")
def _gf64_reduce(lo: np.uint64, hi: np.uint64) -> np.uint64:
    """Reduce lo + z^64 hi modulo z^64 + z^4 + z^3 + z + 1."""
    # hi * z^64 = hi * (z^4 + z^3 + z + 1); the bits pushed past z^63 by the shifts are
    # folded once more (at most 4 bits, so the second fold cannot overflow).
    lo ^= hi ^ (hi << np.uint64(1)) ^ (hi << np.uint64(3)) ^ (hi << np.uint64(4))
    over = (hi >> np.uint64(63)) ^ (hi >> np.uint64(61)) ^ (hi >> np.uint64(60))
    lo ^= over ^ (over << np.uint64(1)) ^ (over << np.uint64(3)) ^ (over << np.uint64(4))
    return lo


@njit(cache=True, inline="always")
def gf64_mul(a: np.uint64, b: np.uint64) -> np.uint64:
    """Product in GF(2^64) with the field polynomial z^64 + z^4 + z^3 + z + 1."""
    lo, hi = clmul(a, b)
    return _gf64_reduce(lo, hi)


@njit(cache=True, nogil=True)
def gf64_mul_soft(a: np.uint64, b: np.uint64) -> np.uint64:
    """Product in GF(2^64) with the portable carry-less multiply (for cross-checks)."""
    lo, hi = clmul_soft(a, b)
    return _gf64_reduce(lo, hi)


@njit(cache=True, nogil=True)
def poly_hash(words: np.ndarray, key: np.uint64) -> np.uint64:
    """h = sum_i words[i] * key^(L - i) over GF(2^64), L = len(words), by Horner's rule.

    The caller appends a length block so that messages of different lengths give
    different polynomials. The constant term is zero (every block is multiplied by the key
    at least once), which makes the family almost-XOR-universal as well as almost-universal.
    """
    h = np.uint64(0)
    for i in range(words.shape[0]):
        h = gf64_mul(h ^ words[i], key)
    return h


# --------------------------------------------------------------------------------------
# Toeplitz matrix-vector product over GF(2), bit-packed.
#
# A W-word square Toeplitz matrix T (64W x 64W bits) is given by a seed a of 2W words:
# T[i, j] = a[i - j + 64W - 1] (bit index), the last seed bit unused. y = T x is the
# "middle product" of a and x: coefficients 64W-1 .. 128W-2 of a(z) x(z).
# --------------------------------------------------------------------------------------

#: Below this many words a TMVP is computed directly (quadratic in words). With 512-bit
#: VPCLMULQDQ (``_tmvp_base_512``) the base is much faster and larger; it must stay >= 56,
#: so that leaves inside the recursion (> half the base) have its 3W + 28 words of scratch.
TMVP_BASE_WORDS = 64 if HAS_VPCLMUL512 else 8
#: Below this many words a full product is computed directly (128-bit digits, fast enough
#: that a bigger base than the TMVP's pays: measured 193 ns at 16 words vs ~280 ns for one
#: more Karatsuba level). With 512-bit VPCLMULQDQ and the column-block leaf
#: (``_kmul_base_512``) it pays up to 64 words: cyclic products at 1e6-3e6 bits are
#: 5-12 % faster than with 32 (24: slower again; 48: about the same as 64).
KMUL_BASE_WORDS = 64 if HAS_VPCLMUL512 else 16


@njit(cache=True, inline="always")
def _xor2(buf: np.ndarray, d: int, a: int, b: int, n: int) -> None:
    """buf[d:d+n] = buf[a:a+n] ^ buf[b:b+n] (unsigned indices, so LLVM vectorises it)."""
    ud = np.uint64(d)
    ua = np.uint64(a)
    ub = np.uint64(b)
    for i in range(np.uint64(n)):
        buf[ud + i] = buf[ua + i] ^ buf[ub + i]


@njit(cache=True, inline="always")
def _xor_into(buf: np.ndarray, d: int, a: int, n: int) -> None:
    """buf[d:d+n] ^= buf[a:a+n]."""
    ud = np.uint64(d)
    ua = np.uint64(a)
    for i in range(np.uint64(n)):
        buf[ud + i] ^= buf[ua + i]


@njit(cache=True, inline="always")
def _xor_into2(buf: np.ndarray, d: int, a: int, b: int, n: int) -> None:
    """buf[d:d+n] ^= buf[a:a+n] ^ buf[b:b+n]."""
    ud = np.uint64(d)
    ua = np.uint64(a)
    ub = np.uint64(b)
    for i in range(np.uint64(n)):
        buf[ud + i] ^= buf[ua + i] ^ buf[ub + i]


@njit(cache=True, nogil=True)
def _tmvp_base(buf: np.ndarray, ao: int, xo: int, yo: int, W: int) -> None:
    """buf[yo:yo+W] = T(buf[ao:ao+2W]) buf[xo:xo+W], schoolbook at word level.

    Word block (i, j) of T is the 64x64 Toeplitz matrix with seed words a[i-j+W-1],
    a[i-j+W]; its product with x[j] is bits 63..126 of clmul(a[i-j+W-1], x[j]) plus the low
    word of clmul(a[i-j+W], x[j]) shifted up by one. Summing the word convolution
    c_k = sum_j clmul(a[k-j], x[j]) first and extracting afterwards halves the clmuls.
    """
    one = np.uint64(1)
    s63 = np.uint64(63)
    prev_lo = np.uint64(0)
    prev_hi = np.uint64(0)
    for t in range(W + 1):
        k = t + W - 1  # c_k for k = W-1 .. 2W-1
        clo = np.uint64(0)
        chi = np.uint64(0)
        j0 = max(k - (2 * W - 1), 0)
        j1 = min(k + 1, W)
        for j in range(j0, j1):
            lo, hi = clmul(buf[np.uint64(ao + k - j)], buf[np.uint64(xo + j)])
            clo ^= lo
            chi ^= hi
        if t > 0:
            # output word t-1 uses c_{t-1+W-1} (both halves) and the low half of c_{t-1+W}
            buf[yo + t - 1] = (prev_lo >> s63) ^ (prev_hi << one) ^ (clo << one)
        prev_lo = clo
        prev_hi = chi


@njit(cache=True, nogil=True)
def _tmvp_base_512(buf: np.ndarray, ao: int, xo: int, yo: int, W: int, wo: int) -> None:
    """``_tmvp_base`` for even W >= 4 with 512-bit VPCLMULQDQ; buf[wo:wo+3W+28] is scratch.

    The Toeplitz product is bits 64W-1 .. 128W-2 of the polynomial product a(z) x(z)
    (a: 2W words, x: W words), so only its digit columns W/2 - 2 .. W (of 3W/2 - 1) are
    formed, four at a time by ``_cols4`` (x digits broadcast, a copied with three zero
    digits on each side), into product words; y is then those words shifted down one bit.
    The first block starts with no carry, so its lowest two words are incomplete: unused.
    """
    uwo = np.uint64(wo)
    six = np.uint64(6)
    twoW = np.uint64(2 * W)
    for i in range(six):
        buf[uwo + i] = 0
        buf[uwo + twoW + six + i] = 0
    uao = np.uint64(ao)
    for i in range(twoW):
        buf[uwo + six + i] = buf[uao + i]
    pw = wo + 2 * W + 12  # product words 2 kstart .. : buf[pw:pw+W+16]
    Wd = W // 2
    kstart = Wd - 2
    nb = (Wd + 3 + 3) // 4  # blocks of four of the Wd + 3 columns kstart .. 2 Wd
    c0 = np.uint64(0)
    c1 = np.uint64(0)
    for blk in range(nb):
        k = kstart + 4 * blk
        i0 = max(0, k - 2 * Wd + 1)
        i1 = min(k + 3, Wd - 1)
        c0, c1 = _cols4(buf, np.uint64(xo + 2 * i0),  # type: ignore[call-arg]
                        np.uint64(wo + 6 + 2 * (k - i0)), np.uint64(pw + 8 * blk),
                        np.uint64(i1 - i0 + 1), c0, c1)
    # product word W - 1 + t sits at pw + t + 3
    up = np.uint64(pw + 3)
    uyo = np.uint64(yo)
    one = np.uint64(1)
    s63 = np.uint64(63)
    for t in range(np.uint64(W)):
        buf[uyo + t] = (buf[up + t] >> s63) | (buf[up + t + one] << one)


@njit(cache=True, nogil=True)
def _tmvp_base_words(buf: np.ndarray, ao: int, xo: int, yo: int, W: int, wo: int) -> None:
    """``_tmvp_base`` with the signature of ``_tmvp_base_512`` (``wo`` unused)."""
    _tmvp_base(buf, ao, xo, yo, W)


# As for _kmul_base_even: only hosts with 512-bit VPCLMULQDQ compile the 512-bit kernel.
_tmvp_base_even = _tmvp_base_512 if HAS_VPCLMUL512 else _tmvp_base_words


#: Deepest recursion the explicit stacks below allow (sizes up to 8 * 2^40 words).
_MAX_DEPTH = 48


@njit(cache=True, nogil=True)
def _tmvp_rec(buf: np.ndarray, ao: int, xo: int, yo: int, W: int, wo: int) -> None:
    """buf[yo:yo+W] = T(buf[ao:ao+2W]) buf[xo:xo+W]; buf[wo:wo+4W] is scratch.

    Karatsuba split for Toeplitz matrices (Fan & Hasan 2007): with h = W/2 and the blocks
    T = [[T0, T-1], [T1, T0]], P = T0 (x0 + x1), y0 = P + (T-1 + T0) x1,
    y1 = P + (T1 + T0) x0. Over GF(2) "+" is xor, and the sum of two Toeplitz matrices is
    the Toeplitz matrix of the xor of their seeds: three half-size products instead of four.
    Everything lives in one buffer addressed by offsets. The recursion is run on an
    explicit stack (phase = which child comes next), because Numba cannot cache
    self-recursive functions (a cached one segfaults when loaded).
    """
    _tmvp_rec_st(buf, ao, xo, yo, W, wo, np.empty((_MAX_DEPTH, 6), dtype=np.int64))


@njit(cache=True, nogil=True)
def _tmvp_rec_st(buf: np.ndarray, ao: int, xo: int, yo: int, W: int, wo: int,
                 st: np.ndarray) -> None:
    """``_tmvp_rec`` with its stack ``st`` (_MAX_DEPTH x 6 int64; ao, xo, yo, W, wo, phase)
    from the caller, so that a loop over blocks allocates it once."""
    sp = 0
    st[0, 0] = ao
    st[0, 1] = xo
    st[0, 2] = yo
    st[0, 3] = W
    st[0, 4] = wo
    st[0, 5] = 0
    sp = 1
    while sp > 0:
        top = sp - 1
        ao = st[top, 0]
        xo = st[top, 1]
        yo = st[top, 2]
        W = st[top, 3]
        wo = st[top, 4]
        ph = st[top, 5]
        if ph == 0 and (W <= TMVP_BASE_WORDS or W % 2 == 1):
            if W % 2 == 0 and W >= 4:
                _tmvp_base_even(buf, ao, xo, yo, W, wo)
            else:
                _tmvp_base(buf, ao, xo, yo, W)
            sp -= 1
            continue
        h = W // 2
        t = wo          # x0 + x1            (h words)
        p = wo + h      # P                  (h words)
        s = wo + 2 * h  # seed sums          (2h words)
        rest = wo + 4 * h
        if ph == 0:
            _xor2(buf, t, xo, xo + h, h)
            ca, cx, cy = ao + h, t, p                       # P = T0 (x0 + x1)
        elif ph == 1:
            _xor2(buf, s, ao, ao + h, 2 * h)
            ca, cx, cy = s, xo + h, yo                      # y0 = (T-1 + T0) x1
        elif ph == 2:
            _xor2(buf, s, ao + 2 * h, ao + h, 2 * h)
            ca, cx, cy = s, xo, yo + h                      # y1 = (T1 + T0) x0
        else:
            _xor_into(buf, yo, p, h)
            _xor_into(buf, yo + h, p, h)
            sp -= 1
            continue
        st[top, 5] = ph + 1
        st[sp, 0] = ca
        st[sp, 1] = cx
        st[sp, 2] = cy
        st[sp, 3] = h
        st[sp, 4] = rest
        st[sp, 5] = 0
        sp += 1


@njit(cache=True, nogil=True)
def _tmvp_blocks_jit(seed: np.ndarray, x: np.ndarray, B: int, P: int, Q: int) -> np.ndarray:
    """y (P*B words) = T x for a (64PB x 64QB) Toeplitz matrix split into B-word squares.

    ``seed`` has (P+Q)*B words and defines T[i, j] = seed[i - j + 64QB - 1] (bits); ``x``
    has Q*B words. Square block (I, J) has the seed words starting at (I - J + Q - 1) * B.
    One work buffer and one stack serve every block: seed (2B) | x (B) | y (B) | scratch
    (4B + slack); each block's product is xored into its row of y.
    """
    y = np.zeros(P * B, dtype=np.uint64)
    buf = np.empty(8 * B + 64, dtype=np.uint64)
    st = np.empty((_MAX_DEPTH, 6), dtype=np.int64)
    uB = np.uint64(B)
    for I in range(P):
        for J in range(Q):
            uoff = np.uint64((I - J + Q - 1) * B)
            ux = np.uint64(J * B)
            for i in range(2 * uB):
                buf[i] = seed[uoff + i]
            for i in range(uB):
                buf[2 * uB + i] = x[ux + i]
            _tmvp_rec_st(buf, 0, 2 * B, 3 * B, B, 4 * B, st)
            uy = np.uint64(I * B)
            for i in range(uB):
                y[uy + i] ^= buf[3 * uB + i]
    return y


def tmvp_blocks(seed: np.ndarray, x: np.ndarray, B: int, P: int, Q: int) -> np.ndarray:
    """See ``_tmvp_blocks_jit`` (one thread: this method serves small sizes, where a second
    thread costs more than it gains)."""
    return _tmvp_blocks_jit(seed, x, B, P, Q)


def even_block_words(m_words: int) -> int:
    """Smallest W = c * 2^k >= m_words with c even and <= KMUL_BASE_WORDS: Karatsuba
    leaves of even size, which the 128-bit-digit base case handles."""
    if m_words <= KMUL_BASE_WORDS:
        return max(2, m_words + (m_words % 2))
    k = 0
    while (KMUL_BASE_WORDS << k) < m_words:
        k += 1
    c = -(-m_words // (1 << k))
    return (c + (c % 2)) << k


def block_words(m_words: int) -> int:
    """Smallest B = c * 2^k >= m_words with c <= TMVP_BASE_WORDS (Karatsuba-friendly);
    c even with the 512-bit base case, which works on 128-bit digits."""
    even = 2 if HAS_VPCLMUL512 else 1
    if m_words <= TMVP_BASE_WORDS:
        return max(-(-m_words // even) * even, 1)
    k = 0
    while (TMVP_BASE_WORDS << k) < m_words:
        k += 1
    c = -(-m_words // (1 << k))
    return (-(-c // even) * even) << k


# --------------------------------------------------------------------------------------
# Full products: Karatsuba multiplication of packed polynomials.
# --------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _kmul_base_512(buf: np.ndarray, ao: int, bo: int, co: int, W: int, wo: int) -> None:
    """buf[co:co+2W] = a * b for even W with 512-bit VPCLMULQDQ, four columns at a time.

    b is copied to buf[wo:wo+W+12] with three zero digits on each side, so that every
    step of ``_cols4`` loads four consecutive digits of b, including those out of range
    (zeros). Columns go in blocks of four; each block's top two words are carried in
    registers into the next block, so every output word is stored exactly once.
    Measured on the dev machine (Zen 4): 0.7-1.0 ns per digit pair at 12-24 digits,
    against 1.2-1.8 ns for the lane-summing loop it replaced (in the git history).
    """
    uwo = np.uint64(wo)
    six = np.uint64(6)
    for i in range(six):
        buf[uwo + i] = 0
        buf[uwo + np.uint64(W) + six + i] = 0
    ubo = np.uint64(bo)
    for i in range(np.uint64(W)):
        buf[uwo + six + i] = buf[ubo + i]
    Wd = W // 2
    nb = (2 * Wd + 2) // 4  # blocks of four of the 2 Wd - 1 columns
    c0 = np.uint64(0)
    c1 = np.uint64(0)
    for blk in range(nb):
        k = 4 * blk
        i0 = max(0, k - Wd + 1)           # steps: every a digit that meets a column k..k+3
        i1 = min(k + 3, Wd - 1)
        a_off = np.uint64(ao + 2 * i0)
        b_off = np.uint64(wo + 6 + 2 * (k - i0))
        c_off = np.uint64(co + 2 * k)
        cnt = np.uint64(i1 - i0 + 1)
        if blk == nb - 1 and Wd % 2 == 1:
            # odd digit count: the last block holds one column, whose 4 words end the product
            c0, c1 = _cols4_half(buf, a_off, b_off, c_off, cnt, c0, c1)  # type: ignore[call-arg]
        else:
            c0, c1 = _cols4(buf, a_off, b_off, c_off, cnt, c0, c1)  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _kmul_base_128(buf: np.ndarray, ao: int, bo: int, co: int, W: int, wo: int) -> None:
    """buf[co:co+2W] = a * b for even W, column by column on 128-bit digits: four
    carry-less multiplies per pair of vector loads (1.7-1.9x faster than word by word).
    ``wo`` unused (same signature as ``_kmul_base_512``)."""
    Wd = W // 2
    # unsigned offsets: no negative-index wrap-around checks in the hot loop
    uao = np.uint64(ao)
    ubo = np.uint64(bo)
    uco = np.uint64(co)
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    for i in range(np.uint64(2 * W)):
        buf[uco + i] = 0
    for k in range(2 * Wd - 1):
        s0 = np.uint64(0)
        s1 = np.uint64(0)
        s2 = np.uint64(0)
        s3 = np.uint64(0)
        for d in range(max(0, k - Wd + 1), min(k, Wd - 1) + 1):
            ia = uao + two * np.uint64(d)
            jb = ubo + two * np.uint64(k - d)
            r0, r1, r2, r3 = clmul2x2(buf[ia], buf[ia + one], buf[jb], buf[jb + one])
            s0 ^= r0
            s1 ^= r1
            s2 ^= r2
            s3 ^= r3
        kc = uco + two * np.uint64(k)
        buf[kc] ^= s0
        buf[kc + one] ^= s1
        buf[kc + two] ^= s2
        buf[kc + three] ^= s3


# Only hosts with 512-bit VPCLMULQDQ compile the 512-bit kernel (its intrinsic would not
# select elsewhere), so the even-W base case is chosen here rather than by a branch.
_kmul_base_even = _kmul_base_512 if HAS_VPCLMUL512 else _kmul_base_128


@njit(cache=True, nogil=True)
def _kmul_base(buf: np.ndarray, ao: int, bo: int, co: int, W: int, wo: int) -> None:
    """buf[co:co+2W] = a * b, schoolbook; buf[wo:wo+W+12] is scratch. Even W: 128-bit
    digits (``_kmul_base_512`` or ``_kmul_base_128``); odd W: word by word."""
    if W % 2 == 0:
        _kmul_base_even(buf, ao, bo, co, W, wo)
        return
    carry = np.uint64(0)
    for k in range(2 * W - 1):
        lo_acc = np.uint64(0)
        hi_acc = np.uint64(0)
        for i in range(max(0, k - W + 1), min(k, W - 1) + 1):
            lo, hi = clmul(buf[ao + i], buf[bo + k - i])
            lo_acc ^= lo
            hi_acc ^= hi
        buf[co + k] = lo_acc ^ carry
        carry = hi_acc
    buf[co + 2 * W - 1] = carry


@njit(cache=True, nogil=True)
def _kmul(buf: np.ndarray, ao: int, bo: int, co: int, W: int, wo: int) -> None:
    """buf[co:co+2W] = a * b for W-word polynomials a = buf[ao:ao+W], b = buf[bo:bo+W].

    Karatsuba (Karatsuba & Ofman 1962): a0 b0, a1 b1 and (a0 + a1)(b0 + b1), down to a
    schoolbook base with carry-less multiplies; buf[wo:wo+4W] is scratch. Explicit stack
    instead of recursion, so that Numba can cache it.
    """
    _kmul_st(buf, ao, bo, co, W, wo, np.empty((_MAX_DEPTH, 6), dtype=np.int64))


@njit(cache=True, nogil=True)
def _kmul_st(buf: np.ndarray, ao: int, bo: int, co: int, W: int, wo: int,
             st: np.ndarray) -> None:
    """``_kmul`` with its stack ``st`` (_MAX_DEPTH x 6 int64) from the caller: loops of
    many products allocate it once (an allocation costs about as much as a 16-word leaf)."""
    st[0, 0] = ao
    st[0, 1] = bo
    st[0, 2] = co
    st[0, 3] = W
    st[0, 4] = wo
    st[0, 5] = 0
    sp = 1
    while sp > 0:
        top = sp - 1
        ao = st[top, 0]
        bo = st[top, 1]
        co = st[top, 2]
        W = st[top, 3]
        wo = st[top, 4]
        ph = st[top, 5]
        if ph == 0 and (W <= KMUL_BASE_WORDS or W % 2 == 1):
            _kmul_base(buf, ao, bo, co, W, wo)
            sp -= 1
            continue
        h = W // 2
        sa = wo
        sb = wo + h
        mid = wo + 2 * h
        if ph == 0:
            ca, cb, cc, cw = ao, bo, co, wo                    # a0 b0 -> c[0:2h]
        elif ph == 1:
            ca, cb, cc, cw = ao + h, bo + h, co + 2 * h, wo    # a1 b1 -> c[2h:4h]
        elif ph == 2:
            _xor2(buf, sa, ao, ao + h, h)
            _xor2(buf, sb, bo, bo + h, h)
            ca, cb, cc, cw = sa, sb, mid, wo + 4 * h          # (a0+a1)(b0+b1)
        else:
            # middle term first (it reads the low and high products the next loop changes)
            _xor_into2(buf, mid, co, co + 2 * h, 2 * h)
            _xor_into(buf, co + h, mid, 2 * h)
            sp -= 1
            continue
        st[top, 5] = ph + 1
        st[sp, 0] = ca
        st[sp, 1] = cb
        st[sp, 2] = cc
        st[sp, 3] = h
        st[sp, 4] = cw
        st[sp, 5] = 0
        sp += 1


# --------------------------------------------------------------------------------------
# Schönhage's ternary FFT for GF(2)[x] (A. Schönhage, "Schnelle Multiplikation von
# Polynomen über Körpern der Charakteristik 2", Acta Informatica 7, 395, 1977).
#
# Cyclic products mod x^(D K) - 1 with D = 3^k: the operands are cut into D chunks of K
# bits, read as polynomials in z = x^K with coefficients in the ring
# R = GF(2)[y]/(y^(2L) + y^L + 1), L >= K, where y has order 3L, so w = y^(3L/D) is a
# principal D-th root of unity (needs 3^(k-1) | L) and multiplying by a power of w is a
# shift with two folds. A chunk product has degree <= 2K - 2 < 2L, so nothing wraps in R
# and the cyclic convolution comes out exactly. 1/D = 1 in characteristic 2: the inverse
# transform needs no scaling. Elements are 2L bits, packed, not word-aligned in general.
# --------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _mask(lo_b: int, hi_b: int) -> np.uint64:
    """Word with bits lo_b .. hi_b - 1 set (0 <= lo_b < hi_b <= 64)."""
    if hi_b - lo_b >= 64:
        return np.uint64(0xFFFFFFFFFFFFFFFF)
    return ((np.uint64(1) << np.uint64(hi_b - lo_b)) - np.uint64(1)) << np.uint64(lo_b)


@njit(cache=True, nogil=True)
def _xor_bits(dst: np.ndarray, db: int, dbit: int, src: np.ndarray, sb: int, sbit: int,
              nbits: int) -> None:
    """dst bits [dbit, dbit+nbits) ^= src bits [sbit, sbit+nbits) (dst/src at word bases).

    Reads up to one word past the source range: callers keep a word of zero padding.
    The first and last destination words are masked; the words between are a tight
    two-load, two-shift loop with a constant shift (vectorised by LLVM).
    """
    if nbits <= 0:
        return
    w0 = dbit >> 6
    w1 = (dbit + nbits - 1) >> 6
    end = dbit + nbits
    # The end words are read inline rather than through a helper taking the array: Numba
    # wraps an array handed to an inlined function in reference-count calls (atomic, not
    # removed here), which cost ~30 ns per call, more than the loop on a 100-word span.
    q = sbit + 64 * w0 - dbit  # >= -63: source bit of dst bit 64 w0
    if q < 0:
        v = src[sb] << np.uint64(-q)
    else:
        qs = q & 63
        v = src[sb + (q >> 6)] >> np.uint64(qs)
        if qs:
            v |= src[sb + (q >> 6) + 1] << np.uint64(64 - qs)
    dst[db + w0] ^= v & _mask(dbit - 64 * w0, min(end - 64 * w0, 64))
    if w1 == w0:
        return
    q = sbit + 64 * w1 - dbit  # > 0
    qs = q & 63
    v = src[sb + (q >> 6)] >> np.uint64(qs)
    if qs:
        v |= src[sb + (q >> 6) + 1] << np.uint64(64 - qs)
    dst[db + w1] ^= v & _mask(0, end - 64 * w1)
    q = sbit + 64 * (w0 + 1) - dbit  # >= 0: source bit of dst bit 64 (w0 + 1)
    sh = q & 63
    # Unsigned indices: Numba then skips its negative-index wrap-around, and LLVM
    # vectorises the loop (measured 12x faster than with signed indices).
    sw = np.uint64(sb + (q >> 6))
    d0 = np.uint64(db + w0 + 1)
    cnt = np.uint64(w1 - w0 - 1)
    one = np.uint64(1)
    if sh == 0:
        for i in range(cnt):
            dst[d0 + i] ^= src[sw + i]
    else:
        r = np.uint64(sh)
        lft = np.uint64(64 - sh)
        for i in range(cnt):
            dst[d0 + i] ^= (src[sw + i] >> r) | (src[sw + i + one] << lft)


@njit(cache=True, nogil=True)
def _mulpow_acc(dst: np.ndarray, db: int, src: np.ndarray, sb: int, t: int, L: int) -> None:
    """dst ^= y^t * src in R = GF(2)[y]/(y^2L + y^L + 1), 0 <= t < 3L, elements 2L bits.

    Bit i of src lands at p = i + t < 5L: kept if p < 2L; if 2L <= p < 3L it folds to
    p - L and p - 2L (y^2L = y^L + 1); if p >= 3L it folds to p - 3L (y^3L = 1).
    """
    twoL = 2 * L
    # i in [0, min(2L, 2L - t)) -> p = i + t < 2L
    n0 = twoL - t
    if n0 > 0:
        _xor_bits(dst, db, t, src, sb, 0, n0)
    # i with 2L <= i + t < 3L
    i0 = max(0, twoL - t)
    i1 = min(twoL, 3 * L - t)
    if i1 > i0:
        _xor_bits(dst, db, i0 + t - L, src, sb, i0, i1 - i0)
        _xor_bits(dst, db, i0 + t - twoL, src, sb, i0, i1 - i0)
    # i with i + t >= 3L
    i0 = max(0, 3 * L - t)
    if twoL > i0:
        _xor_bits(dst, db, i0 + t - 3 * L, src, sb, i0, twoL - i0)


@njit(cache=True, nogil=True)
def _butterfly3(a: np.ndarray, tmp: np.ndarray, t: int, E: int, M: int, M3: int, step: int,
                threeL: int, L: int, inverse: bool) -> None:
    """Radix-3 butterfly number t of a stage; tmp is scratch of 6E words.

    With r^2 = r + 1 (the ring relation y^2L = y^L + 1) the 3-point transform needs four
    shifts instead of six: y1 = w^j [(x0 + x2) + r (x1 + x2)],
    y2 = w^2j [(x0 + x1) + r (x1 + x2)]; and its inverse three:
    x1' = w^-j y1, x2' = w^-2j y2, s = x1' + x2', X0 = y0 + s, X1 = y0 + x1' + r s,
    X2 = y0 + x2' + r s.
    """
    blk = t // M3
    j = t % M3
    i0 = (blk * M + j) * E
    i1 = i0 + M3 * E
    i2 = i1 + M3 * E
    e = (step * j) % threeL
    e2 = (2 * step * j) % threeL
    ou = 3 * E
    ov = 4 * E
    ow = 5 * E
    # unsigned offsets in the word loops: no wrap-around checks, vectorised
    u0 = np.uint64(i0)
    u1 = np.uint64(i1)
    u2 = np.uint64(i2)
    uE = np.uint64(E)
    qu = np.uint64(ou)
    qv = np.uint64(ov)
    qw = np.uint64(ow)
    if not inverse:
        # the sums go to scratch, the outputs straight into a (no copy back)
        for w in range(uE):
            x0 = a[u0 + w]
            x1 = a[u1 + w]
            x2 = a[u2 + w]
            a[u0 + w] = x0 ^ x1 ^ x2
            a[u1 + w] = 0
            a[u2 + w] = 0
            tmp[qu + w] = x0 ^ x2
            tmp[qv + w] = x1 ^ x2
            tmp[qw + w] = x0 ^ x1
        _mulpow_acc(a, i1, tmp, ou, e, L)
        _mulpow_acc(a, i1, tmp, ov, (e + L) % threeL, L)
        _mulpow_acc(a, i2, tmp, ow, e2, L)
        _mulpow_acc(a, i2, tmp, ov, (e2 + L) % threeL, L)
    else:
        for w in range(uE):
            tmp[qu + w] = 0
            tmp[qv + w] = 0
            tmp[qw + w] = 0
        _mulpow_acc(tmp, ou, a, i1, (threeL - e) % threeL, L)   # x1'
        _mulpow_acc(tmp, ov, a, i2, (threeL - e2) % threeL, L)  # x2'
        for w in range(uE):
            tmp[w] = tmp[qu + w] ^ tmp[qv + w]                   # s
        _mulpow_acc(tmp, ow, tmp, 0, L, L)                       # r s
        for w in range(uE):
            y0 = a[u0 + w]
            rs = tmp[qw + w]
            a[u0 + w] = y0 ^ tmp[w]
            a[u1 + w] = y0 ^ tmp[qu + w] ^ rs
            a[u2 + w] = y0 ^ tmp[qv + w] ^ rs


@njit(cache=True, nogil=True)
def _dft3_full(a: np.ndarray, E: int, D: int, L: int, inverse: bool) -> None:
    """Every stage of the transform of the D elements in ``a``, serially, without the GIL."""
    k = 0
    M = 1
    while M < D:
        M *= 3
        k += 1
    for s in range(k):
        M = D // 3**s if not inverse else 3 ** (s + 1)
        _dft3_stage_range(a, E, M, L, inverse, 0, D // 3)


@njit(cache=True, nogil=True)
def _dft3_stage_range(a: np.ndarray, E: int, M: int, L: int, inverse: bool, t0: int,
                      t1: int) -> None:
    """Butterflies t0 .. t1-1 of the stage with block length M (without the GIL)."""
    tmp = np.zeros(6 * E, dtype=np.uint64)
    M3 = M // 3
    step = 3 * L // M
    for t in range(t0, t1):
        _butterfly3(a, tmp, t, E, M, M3, step, 3 * L, L, inverse)


@njit(cache=True, nogil=True)
def _load_chunks(words: np.ndarray, nbits: int, D: int, K: int, E: int,
                 out: np.ndarray) -> None:
    """out = D elements of E words; element j holds bits [jK, jK+K) of the packed input."""
    for i in range(np.uint64(D * E)):
        out[i] = 0
    for j in range(D):
        lo = j * K
        if lo >= nbits:
            break
        cnt = min(K, nbits - lo)
        _xor_bits(out, j * E, 0, words, 0, lo, cnt)


@njit(cache=True, nogil=True)
def _pointwise(a: np.ndarray, b: np.ndarray, E: int, W: int, L: int, j0: int,
               j1: int) -> None:
    """a[j] = a[j] * b[j] in R for j0 <= j < j1 (Karatsuba, then fold mod y^2L + y^L + 1)."""
    # one buffer: a_j (W) | b_j (W) | product (2W) | scratch (4W + slack)
    buf = np.zeros(8 * W + 64, dtype=np.uint64)
    st = np.empty((_MAX_DEPTH, 6), dtype=np.int64)
    uW = np.uint64(W)
    for j in range(j0, j1):
        uj = np.uint64(j * E)
        for w in range(np.uint64(E - 1)):
            buf[w] = a[uj + w]
            buf[uW + w] = b[uj + w]
        # words E-1 .. W-1 of both operands stay zero from np.zeros
        _kmul_st(buf, 0, W, 2 * W, W, 4 * W, st)
        for w in range(np.uint64(E)):
            a[uj + w] = 0
        # p = p_low(< 2L) + p2 y^2L + p3 y^3L  ->  p_low + p2 (y^L + 1) + p3; bits read past
        # 4L come from scratch and are masked off by _xor_bits.
        _xor_bits(a, j * E, 0, buf, 2 * W, 0, 2 * L)
        _xor_bits(a, j * E, L, buf, 2 * W, 2 * L, L)
        _xor_bits(a, j * E, 0, buf, 2 * W, 2 * L, L)
        _xor_bits(a, j * E, 0, buf, 2 * W, 3 * L, L)


@njit(cache=True, nogil=True)
def _gather_range(c: np.ndarray, D: int, E: int, K: int, start: int, count: int) -> np.ndarray:
    """Bits start .. start+count-1 of sum_j c_j x^(jK) mod x^(DK) - 1, packed (one word of
    zero padding), without building the other D K - count bits."""
    total = D * K
    out = np.zeros(count // 64 + 2, dtype=np.uint64)
    span = 2 * K - 1
    end = start + count
    for j in range(D):
        off = j * K
        first = min(span, total - off)
        # element bits [0, first) land at off.., bits [first, span) wrap around to 0..
        lo = max(off, start)
        hi = min(off + first, end)
        if hi > lo:
            _xor_bits(out, 0, lo - start, c, j * E, lo - off, hi - lo)
        if span > first:
            lo = max(0, start)
            hi = min(span - first, end)
            if hi > lo:
                _xor_bits(out, 0, lo - start, c, j * E, first + lo, hi - lo)
    return out


def schoenhage_params(nbits: int, k_only: int | None = None) -> tuple[int, int, int, int, int]:
    """(k, D, K, L, E): transform length D = 3^k, chunk K bits, ring half-size L bits, and
    words per element E, for cyclic products of length >= nbits, by a simple cost model."""
    best: tuple[float, tuple[int, int, int, int, int]] | None = None
    for k in ([k_only] if k_only else range(2, 13)):
        D = 3**k
        K = -(-nbits // D)
        unit = 3 ** (k - 1)
        L = -(-K // unit) * unit
        E = -(-2 * L // 64) + 1  # one word of zero padding for the shifted reads
        W = even_block_words(E)
        # fitted on the 2-core AMD EPYC (Zen 4) dev machine (ns, one thread): a radix-3
        # butterfly ~250 + E, three transforms of k stages of D/3 butterflies; a pointwise
        # product ~100 + 0.85 W^log2(3) (512-bit VPCLMULQDQ leaves). Within 15 % of the
        # measured time from 3e4 to 1.5e7 bits; picks the fastest k or one within 5 %.
        cost = 3 * k * (D // 3) * (250.0 + 1.0 * E) + D * (100.0 + 0.85 * W ** 1.585)
        if best is None or cost < best[0]:
            best = (cost, (k, D, K, L, E))
    assert best is not None
    return best[1]


def ternary_plan(length_bits: int, k: int | None = None) -> tuple[int, int, int, int, int, int]:
    """(k, D, K, L, E, W) of Schönhage's transform for cyclic products of length >= length_bits
    (``schoenhage_params``, plus the Karatsuba size W of the pointwise products)."""
    k, D, K, L, E = schoenhage_params(length_bits, k)
    return k, D, K, L, E, even_block_words(E)


#: Work arrays up to this many words are kept per thread and reused by the next call:
#: fresh ones cost a page fault per 4 KiB whenever the heap has been given back to the
#: system (measured: 194 faults, +0.35 ms on a 1.0 ms hash of 10^6 bits).
WORKSPACE_MAX_WORDS = 1 << 21
_WORKSPACE = threading.local()


def _workspace(slot: object, size: int) -> np.ndarray:
    """A uint64 array of ``size`` words (contents undefined), reused per thread and slot."""
    if size > WORKSPACE_MAX_WORDS:
        return np.empty(size, dtype=np.uint64)
    arrays = getattr(_WORKSPACE, "arrays", None)
    if arrays is None:
        arrays = _WORKSPACE.arrays = {}
    buf = arrays.get(slot)
    if buf is None or buf.size < size:
        buf = arrays[slot] = np.empty(size, dtype=np.uint64)
    return buf[:size]


def _multiply_inverse(X: np.ndarray, S: np.ndarray, plan: tuple[int, ...],
                      pool: ThreadPoolExecutor | None) -> None:
    """X = inverse transform of X * S (pointwise in R), on the calling thread or, with a
    pool, on two threads in a few coarse tasks (GIL-free kernels).

    Few synchronisation points on purpose: an OpenMP barrier after each of the ~3k stages
    stalls whenever the machine is busy and one thread is descheduled. Tasks: the two
    halves of the pointwise products; the inverse transform's first k-2 stages, which act
    on 9 independent blocks of D/9 elements; then the last two stages, each split in two
    ranges of butterflies.
    """
    _, D, _, L, E, W = plan
    if pool is None:
        _pointwise(X, S, E, W, L, 0, D)
        _dft3_full(X, E, D, L, True)
        return
    half = D // 2
    for f in [pool.submit(_pointwise, X, S, E, W, L, 0, half),
              pool.submit(_pointwise, X, S, E, W, L, half, D)]:
        f.result()
    ninth = D // 9
    views = [X[i * ninth * E:(i + 1) * ninth * E] for i in range(9)]

    def inverse_blocks(blocks: list[np.ndarray]) -> None:
        for v in blocks:
            _dft3_full(v, E, ninth, L, True)

    for f in [pool.submit(inverse_blocks, views[:5]), pool.submit(inverse_blocks, views[5:])]:
        f.result()
    nb = D // 3
    for M in (D // 3, D):
        for f in [pool.submit(_dft3_stage_range, X, E, M, L, True, 0, nb // 2),
                  pool.submit(_dft3_stage_range, X, E, M, L, True, nb // 2, nb)]:
            f.result()


#: Two threads pay from this transform length on (below, starting them costs more).
PARALLEL_FROM_D = 729


def cyclic_products_range(a_words: np.ndarray, a_bits: int,
                          bs: list[tuple[np.ndarray, int]], length_bits: int, start: int,
                          count: int, k: int | None = None,
                          parallel: bool = False) -> list[np.ndarray]:
    """Bits start .. start+count-1 of a(x) b(x) mod x^T - 1 (some T >= length_bits, the
    same for every b) for each (b_words, b_bits) in ``bs``, packed with a word of zero
    padding. a is transformed once for all the b. Inputs need one word of zero padding past
    their last bit; ``k`` forces the transform length 3^k (tests); ``parallel`` runs the
    work on two threads from 3^6 points on. Work arrays are reused per thread."""
    plan = ternary_plan(length_bits, k)
    _, D, K, L, E, _ = plan
    S = _workspace(0, D * E)
    _load_chunks(a_words, a_bits, D, K, E, S)
    Xs = []
    for i, (b_words, b_bits) in enumerate(bs):
        X = _workspace(1 + i, D * E)
        _load_chunks(b_words, b_bits, D, K, E, X)
        Xs.append(X)
    if parallel and D >= PARALLEL_FROM_D:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for f in [pool.submit(_dft3_full, Y, E, D, L, False) for Y in [S, *Xs]]:
                f.result()
            for X in Xs:
                _multiply_inverse(X, S, plan, pool)
    else:
        _dft3_full(S, E, D, L, False)
        for X in Xs:
            _dft3_full(X, E, D, L, False)
            _multiply_inverse(X, S, plan, None)
    return [_gather_range(X, D, E, K, start, count) for X in Xs]


def cyclic_product(a_words: np.ndarray, a_bits: int, b_words: np.ndarray, b_bits: int,
                   length_bits: int, k: int | None = None,
                   parallel: bool = False) -> tuple[np.ndarray, int]:
    """Packed a(x) b(x) mod x^T - 1 for some T >= length_bits (T returned); when
    length_bits >= a_bits + b_bits - 1 this is the plain product. Inputs need one word of
    zero padding past their last bit. ``k`` forces the transform length 3^k (tests)."""
    _, D, K, _, _, _ = ternary_plan(length_bits, k)
    (c,) = cyclic_products_range(a_words, a_bits, [(b_words, b_bits)], length_bits, 0, D * K,
                                 k, parallel)
    return c, D * K


# --------------------------------------------------------------------------------------
# Dot products of message words with key powers (polynomial hashing in place).
# --------------------------------------------------------------------------------------

@intrinsic
def _load_le64(typingctx, buf, byte_off):  # noqa: ANN001 - Numba's intrinsic protocol
    """The little-endian 64-bit word at byte ``byte_off`` of ``buf``'s data (any array
    type, any alignment: an unaligned load); no bounds check."""
    sig = types.uint64(buf, types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001
        i64 = ir.IntType(64)
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        base = builder.bitcast(ary.data, ir.IntType(8).as_pointer())
        ptr = builder.bitcast(builder.gep(base, [args[1]]), i64.as_pointer())
        v = builder.load(ptr, align=1)
        if sys.byteorder != "little":  # pragma: no cover - x86 and ARM run little-endian
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(i64, [i64]), "llvm.bswap.i64"
            )
            v = builder.call(fn, [v])
        return v

    return sig, codegen


def _clmul_dot_codegen(lanes: int, name: str):  # noqa: ANN202 - Numba's intrinsic protocol
    """Code for ``_clmul_dot512`` (``lanes`` = 8 words per vector, llvm.x86.pclmulqdq.512)
    and ``_clmul_dot128`` (2, llvm.x86.pclmulqdq)."""

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        vec = ir.VectorType(i64, lanes)
        per_group = 8 // lanes  # vectors per group of 8 words
        ary = context.make_array(signature.args[0])(context, builder, args[0])
        pwa = context.make_array(signature.args[2])(context, builder, args[2])
        base = builder.gep(builder.bitcast(ary.data, ir.IntType(8).as_pointer()), [args[1]])
        pbase = builder.gep(builder.bitcast(pwa.data, i64.as_pointer()), [args[3]])
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec, vec, ir.IntType(8)]), name
        )
        zero = ir.Constant(vec, [ir.Constant(i64, 0)] * lanes)
        # two accumulators per vector of the group (even and odd words), so that no
        # product waits for another's sum
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(2 * per_group)]
        with cgutils.for_range(builder, args[4]) as loop:
            for q in range(per_group):
                at = builder.add(builder.mul(loop.index, ir.Constant(i64, 8)),
                                 ir.Constant(i64, q * lanes))
                wp = builder.gep(base, [builder.mul(at, ir.Constant(i64, 8))])
                w = builder.load(builder.bitcast(wp, vec.as_pointer()), align=1)
                p = builder.load(builder.bitcast(builder.gep(pbase, [at]), vec.as_pointer()),
                                 align=8)
                for j, imm in enumerate((0x00, 0x11)):
                    prod = builder.call(fn, [w, p, ir.Constant(ir.IntType(8), imm)])
                    acc = accs[2 * q + j]
                    builder.store(builder.xor(builder.load(acc), prod), acc)
        v = builder.load(accs[0])
        for acc in accs[1:]:
            v = builder.xor(v, builder.load(acc))

        def shuffle(x: ir.Value, idx: list[int]) -> ir.Instruction:
            mask = ir.Constant(ir.VectorType(i32, len(idx)), [ir.Constant(i32, i) for i in idx])
            return builder.shuffle_vector(x, x, mask)

        width = lanes
        while width > 2:  # fold the 128-bit lanes: halves xored
            width //= 2
            v = builder.xor(shuffle(v, list(range(width))),
                            shuffle(v, list(range(width, 2 * width))))
        lo = builder.extract_element(v, ir.Constant(i32, 0))
        hi = builder.extract_element(v, ir.Constant(i32, 1))
        return context.make_tuple(builder, signature.return_type, [lo, hi])

    return codegen


@intrinsic
def _clmul_dot512(typingctx, buf, byte_off, pw, pw_off, groups):  # noqa: ANN001
    """Unreduced sum of the carry-less products of 8 ``groups`` little-endian words of
    ``buf`` (from byte ``byte_off``, any alignment) with the words ``pw[pw_off:]``, as
    (lo, hi): two 512-bit VPCLMULQDQs per 8 words (even words by ``imm`` 0x00, odd ones by
    0x11, four lanes each), the 128-bit products summed lane-wise in registers and the
    four lanes folded once at the end. No bounds check."""
    u = types.uint64
    return (types.UniTuple(u, 2)(buf, u, pw, u, u),
            _clmul_dot_codegen(8, "llvm.x86.pclmulqdq.512"))


@intrinsic
def _clmul_dot128(typingctx, buf, byte_off, pw, pw_off, groups):  # noqa: ANN001
    """``_clmul_dot512`` with 128-bit PCLMULQDQ: two words per vector load, eight
    instructions per 8 words (x86-64 without 512-bit VPCLMULQDQ)."""
    u = types.uint64
    return types.UniTuple(u, 2)(buf, u, pw, u, u), _clmul_dot_codegen(2, "llvm.x86.pclmulqdq")


@njit(cache=True, inline="always")
def clmul_dot8_words(buf: np.ndarray, byte_off: np.uint64, pw: np.ndarray, pw_off: np.uint64,
                     groups: np.uint64) -> tuple[np.uint64, np.uint64]:
    """Sum over t < 8 ``groups`` of clmul(word t of ``buf`` from byte ``byte_off``,
    ``pw[pw_off + t]``), unreduced, one word at a time (portable reference; it runs where
    the CPU lacks PCLMULQDQ). Words are read little-endian at any alignment."""
    lo = np.uint64(0)
    hi = np.uint64(0)
    eight = np.uint64(8)
    for t in range(np.uint64(groups) * eight):
        w: np.uint64 = _load_le64(  # type: ignore[call-arg]
            buf, np.uint64(byte_off) + eight * t
        )
        lo_t, hi_t = clmul(w, pw[np.uint64(pw_off) + t])
        lo ^= lo_t
        hi ^= hi_t
    return lo, hi


# Only the intrinsic the host can run is compiled (a 512-bit one would not select elsewhere).
_clmul_dot_hw = _clmul_dot512 if HAS_VPCLMUL512 else _clmul_dot128

if HAS_PCLMUL:

    @njit(cache=True, inline="always")
    def clmul_dot8(buf: np.ndarray, byte_off: np.uint64, pw: np.ndarray, pw_off: np.uint64,
                   groups: np.uint64) -> tuple[np.uint64, np.uint64]:
        """Unreduced sum of clmul(word t, pw[pw_off + t]) over t < 8 ``groups``, words of
        ``buf`` read little-endian from byte ``byte_off`` (512-bit VPCLMULQDQ where the
        CPU has it, else 128-bit PCLMULQDQ)."""
        return _clmul_dot_hw(buf, np.uint64(byte_off), pw,  # type: ignore[call-arg]
                             np.uint64(pw_off), np.uint64(groups))

else:  # pragma: no cover - only on CPUs without PCLMULQDQ (and in the QKDNET_SOFT_CLMUL test)
    clmul_dot8 = clmul_dot8_words
