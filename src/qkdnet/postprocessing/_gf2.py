"""Hazmat: carry-less (GF(2)[z]) arithmetic on packed 64-bit words, in Numba.

Private helpers of verification, amplification and authentication. Bits are packed
little-endian: bit ``k`` of a bit string is bit ``k % 64`` of word ``k // 64``, so that a
word is a polynomial over GF(2) whose coefficient of ``z^b`` is bit ``b``.

* ``clmul(a, b)``: the 128-bit carry-less product of two words. It compiles to the x86
  ``PCLMULQDQ`` instruction (Gueron & Kounavis, Intel white paper 323640, 2014) when the
  CPU has it, and to a branch-free shift-and-xor loop otherwise (same result, ~30x slower).
* ``gf64_mul``: multiplication in GF(2^64) = GF(2)[z]/(z^64 + z^4 + z^3 + z + 1).
* ``poly_hash``: Horner evaluation of a polynomial over GF(2^64) (universal hashing,
  Carter & Wegman 1979; Wegman & Carter 1981).
* ``tmvp``: Toeplitz-matrix-vector product over GF(2) by the two-way Karatsuba split for
  Toeplitz matrices (Fan & Hasan, IEEE Trans. Comput. 56, 224, 2007), with a word-level
  base case computed with ``clmul``.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

HAS_PCLMUL: bool = bool(llvm.get_host_cpu_features().get("pclmul", False))

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


@njit(cache=True)
def gf64_mul_soft(a: np.uint64, b: np.uint64) -> np.uint64:
    """Product in GF(2^64) with the portable carry-less multiply (for cross-checks)."""
    lo, hi = clmul_soft(a, b)
    return _gf64_reduce(lo, hi)


@njit(cache=True)
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

#: Below this many words a TMVP is computed directly (quadratic in words).
TMVP_BASE_WORDS = 8


@njit(cache=True)
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
            lo, hi = clmul(buf[ao + k - j], buf[xo + j])
            clo ^= lo
            chi ^= hi
        if t > 0:
            # output word t-1 uses c_{t-1+W-1} (both halves) and the low half of c_{t-1+W}
            buf[yo + t - 1] = (prev_lo >> s63) ^ (prev_hi << one) ^ (clo << one)
        prev_lo = clo
        prev_hi = chi


# No cache=True here and below: Numba's on-disk cache of self-recursive functions loads a
# broken entry point (segfault on the second run), so these compile once per process (~1 s).
@njit
def _tmvp_rec(buf: np.ndarray, ao: int, xo: int, yo: int, W: int, wo: int) -> None:
    """buf[yo:yo+W] = T(buf[ao:ao+2W]) buf[xo:xo+W]; buf[wo:wo+4W] is scratch.

    Karatsuba split for Toeplitz matrices (Fan & Hasan 2007): with h = W/2 and the blocks
    T = [[T0, T-1], [T1, T0]], P = T0 (x0 + x1), y0 = P + (T-1 + T0) x1,
    y1 = P + (T1 + T0) x0. Over GF(2) "+" is xor, and the sum of two Toeplitz matrices is
    the Toeplitz matrix of the xor of their seeds: three half-size products instead of four.
    Everything lives in one buffer addressed by offsets: no array views are created and
    only one array reference is passed per call, which keeps the recursion cheap.
    """
    if W <= TMVP_BASE_WORDS or W % 2 == 1:
        _tmvp_base(buf, ao, xo, yo, W)
        return
    h = W // 2
    t = wo          # x0 + x1            (h words)
    p = wo + h      # P                  (h words)
    s = wo + 2 * h  # seed sums          (2h words)
    rest = wo + 4 * h
    for i in range(h):
        buf[t + i] = buf[xo + i] ^ buf[xo + h + i]
    _tmvp_rec(buf, ao + h, t, p, h, rest)
    for i in range(2 * h):
        buf[s + i] = buf[ao + i] ^ buf[ao + h + i]
    _tmvp_rec(buf, s, xo + h, yo, h, rest)
    for i in range(2 * h):
        buf[s + i] = buf[ao + 2 * h + i] ^ buf[ao + h + i]
    _tmvp_rec(buf, s, xo, yo + h, h, rest)
    for i in range(h):
        buf[yo + i] ^= buf[p + i]
        buf[yo + h + i] ^= buf[p + i]


@njit(parallel=True)
def tmvp_blocks(seed: np.ndarray, x: np.ndarray, B: int, P: int, Q: int) -> np.ndarray:
    """y (P*B words) = T x for a (64PB x 64QB) Toeplitz matrix split into B-word squares.

    ``seed`` has (P+Q)*B words and defines T[i, j] = seed[i - j + 64QB - 1] (bits); ``x``
    has Q*B words. Square block (I, J) has the seed words starting at (I - J + Q - 1) * B.
    The P*Q block products are independent; they run in parallel, each into its own
    output, and are xor-reduced at the end.
    """
    nb = P * Q
    parts = np.zeros((nb, B), dtype=np.uint64)
    for t in prange(nb):
        I = t // Q
        J = t % Q
        # one private buffer per block: seed (2B) | x (B) | y (B) | scratch (4B + slack)
        buf = np.empty(8 * B + 64, dtype=np.uint64)
        off = (I - J + Q - 1) * B
        buf[0:2 * B] = seed[off:off + 2 * B]
        buf[2 * B:3 * B] = x[J * B:(J + 1) * B]
        _tmvp_rec(buf, 0, 2 * B, 3 * B, B, 4 * B)
        parts[t, :] = buf[3 * B:4 * B]
    y = np.zeros(P * B, dtype=np.uint64)
    for I in range(P):
        for J in range(Q):
            t = I * Q + J
            for i in range(B):
                y[I * B + i] ^= parts[t, i]
    return y


def block_words(m_words: int) -> int:
    """Smallest B = c * 2^k >= m_words with c <= TMVP_BASE_WORDS (Karatsuba-friendly)."""
    if m_words <= TMVP_BASE_WORDS:
        return max(m_words, 1)
    k = 0
    while (TMVP_BASE_WORDS << k) < m_words:
        k += 1
    c = -(-m_words // (1 << k))
    return c << k
