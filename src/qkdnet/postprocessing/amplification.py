"""Privacy amplification by random Toeplitz hashing (hazmat layer).

Eve may know up to (leaked + phase-error) bits about the reconciled key. Hashing the n-bit
key to m bits with a function drawn from a two-universal family removes her information
(leftover hash lemma: Bennett, Brassard, Crépeau & Maurer, IEEE TIT 41, 1915, 1995;
Renner, PhD thesis ETH 2005, Tomamichel, Schaffner, Smith & Renner, IEEE TIT 57, 5524,
2011). The family used is random binary Toeplitz matrices (Krawczyk, CRYPTO '94;
Mansour, Nisan & Tiwari, STOC '90), which is two-universal and needs only n + m - 1 seed
bits. The output length m comes from the finite-key formula (the caller computes it).

Convention (m x n matrix, seed s of n + m - 1 bits):

    T[i, j] = s[i - j + n - 1],   y = T x  (mod 2),

so y_i = sum_j s[i + n - 1 - j] x_j is coefficient n - 1 + i of the product of the
polynomials s(z) x(z): the "middle product". Three exact ways to compute it, all tested
bit for bit against the dense matrix product:

* ``method="clmul"``: bits packed into 64-bit words; the m x n matrix is cut into square
  blocks of B words, each block product computed by the Karatsuba split for Toeplitz
  matrices (Fan & Hasan, IEEE Trans. Comput. 56, 224, 2007) down to 64x64-bit blocks done
  with the carry-less multiply instruction. Cost ~ (n/m) m^1.58; fastest for small n m.
* ``method="ternary"``: Schönhage's FFT for GF(2)[x] (Acta Informatica 7, 395, 1977) on
  the packed bits: a cyclic product of length >= n + m - 1 (the wanted coefficients are
  free of wrap-around), quasi-linear. Fastest for large n m.
* ``method="fft"``: the integer convolution of s and x by a real FFT (the textbook method,
  e.g. Takahashi et al., Sci. Rep. 9, 15733, 2019), rounded and reduced mod 2. Float
  rounding is kept safe by bounding the transform length (blocks of at most 2^25 output
  and input bits, so each integer is < 2^25 and the FFT error is ~1e-7 << 1/2) and checked
  at run time: if any result is further than 1/4 from an integer the call raises instead of
  returning a wrong key. Kept as an independent cross-check; ~20-30x slower here.

``method="auto"`` (the default) picks "ternary" or "clmul" by the size. See
docs/security.md for why the family is two-universal and for measured throughput.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.fft

from qkdnet.errors import ParameterError
from qkdnet.postprocessing._gf2 import _xor_bits, block_words, cyclic_product, tmvp_blocks

__all__ = ["privacy_amplification", "toeplitz_hash"]

Method = Literal["auto", "clmul", "ternary", "fft"]

#: "auto" uses Schönhage's ternary FFT (quasi-linear) instead of the Karatsuba Toeplitz
#: product (cost ~ n m^0.58) once n * m reaches this; measured crossover on the dev machine
#: (n = 1e5 at m/n = 0.5 is about even; n = 3e5 at m/n = 0.125 favours the FFT).
TERNARY_FROM_NM = 1 << 33

#: Largest number of input (and output) bits handled by one FFT; larger problems are cut
#: into blocks. 2^25 keeps every convolution value < 2^25 and the transform length <= 2^26.
FFT_BLOCK_BITS = 1 << 25


def _as_bits(name: str, bits: np.ndarray) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise ParameterError(name, f"must be a 1-D array of bits, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "biu":
            raise ParameterError(name, f"must be an integer array of 0/1, got dtype {arr.dtype}")
        arr = arr.astype(np.uint8)
    if arr.size and int(arr.max()) > 1:
        raise ParameterError(name, "must hold only 0 and 1 (one bit per element)")
    return arr


def _check_lengths(n: int, output_length: int) -> int:
    if isinstance(output_length, bool) or not isinstance(output_length, int | np.integer):
        raise ParameterError("output_length", f"must be an integer, got {output_length!r}")
    m = int(output_length)
    if not 0 <= m <= n:
        raise ParameterError(
            "output_length", f"must be between 0 and the input length {n} bits, got {m}"
        )
    return m


def _pack_words(bits: np.ndarray, lead_zeros: int, total_words: int) -> np.ndarray:
    """Pack 0/1 bytes into little-endian uint64 words after ``lead_zeros`` zero bits."""
    total_bits = total_words * 64
    if lead_zeros % 8 == 0:
        buf = np.zeros(total_words * 8, dtype=np.uint8)
        start = lead_zeros // 8
        packed = np.packbits(bits, bitorder="little")
        buf[start:start + packed.size] = packed
    else:
        padded = np.zeros(total_bits, dtype=np.uint8)
        padded[lead_zeros:lead_zeros + bits.size] = bits
        buf = np.packbits(padded, bitorder="little")
    return buf.view("<u8").astype(np.uint64, copy=False)


class _Seed:
    """The Toeplitz seed, as 0/1 bits or as the raw bytes it was drawn as (packed LSB
    first); ``words(k)`` packs it into k little-endian 64-bit words, zero-padded."""

    def __init__(self, length: int, bits: np.ndarray | None = None,
                 raw: bytes | None = None) -> None:
        self.length = length
        self.bits = bits
        self.raw = raw

    def words(self, total_words: int) -> np.ndarray:
        if self.raw is None:
            assert self.bits is not None
            return _pack_words(self.bits, 0, total_words)
        buf = np.zeros(total_words * 8, dtype=np.uint8)
        nbytes = -(-self.length // 8)
        buf[:nbytes] = np.frombuffer(self.raw, dtype=np.uint8, count=nbytes)
        if self.length % 8:
            buf[nbytes - 1] &= (1 << (self.length % 8)) - 1  # bits past the seed: zero
        return buf.view("<u8").astype(np.uint64, copy=False)


def _toeplitz_clmul(x: np.ndarray, m: int, seed: _Seed) -> np.ndarray:
    n = x.size
    n_words = -(-n // 64)
    m_words = -(-m // 64)
    B = block_words(m_words)
    P = -(-m_words // B)
    Q = -(-n_words // B)
    # Zero bits in front of x (d of them) leave y unchanged with the same seed indexing:
    # T'[i, j'] = s[i - j' + n' - 1] with x'_{j'} = x_{j' - d}, n' = n + d.
    d = Q * B * 64 - n
    xw = _pack_words(x, d, Q * B)
    sw = seed.words((P + Q) * B)
    yw = tmvp_blocks(sw, xw, B, P, Q)
    return np.unpackbits(yw.view(np.uint8), bitorder="little")[:m].copy()


def _toeplitz_ternary(x: np.ndarray, m: int, seed: _Seed, parallel: bool) -> np.ndarray:
    """y = bits n-1 .. n+m-2 of s(x) x(x) mod x^T - 1, T >= n + m - 1 (no wrap-around into
    those bits: the full product has no terms beyond 2n + m - 3)."""
    n = x.size
    length = n + m - 1
    xw = _pack_words(x, 0, -(-n // 64) + 2)
    sw = seed.words(-(-length // 64) + 2)
    c, _ = cyclic_product(sw, length, xw, n, length, parallel=parallel)
    out = np.zeros(-(-m // 64) + 1, dtype=np.uint64)
    _xor_bits(out, 0, 0, c, 0, n - 1, m)
    return np.unpackbits(out.view(np.uint8), bitorder="little")[:m].copy()


def _middle_product_fft(s: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """y_i = sum_j s[i + n - 1 - j] x_j as exact integers, one real FFT (n, m <= 2^25)."""
    n = x.size
    length = scipy.fft.next_fast_len(n + m - 1, real=True)
    # A circular convolution of length >= n + m - 1 leaves coefficients n-1 .. n+m-2 free
    # of wrap-around (the linear convolution has no terms beyond index 2n + m - 3).
    fs = scipy.fft.rfft(s.astype(np.float64), n=length)
    fx = scipy.fft.rfft(x.astype(np.float64), n=length)
    fs *= fx
    del fx
    z = scipy.fft.irfft(fs, n=length)[n - 1:n - 1 + m]
    r = np.rint(z)
    if z.size and float(np.max(np.abs(z - r))) > 0.25:
        # Never hand out a key computed from a badly rounded convolution.
        raise ArithmeticError("FFT rounding error too large for an exact Toeplitz product")
    return r.astype(np.int64)


def _toeplitz_fft(x: np.ndarray, m: int, seed: np.ndarray) -> np.ndarray:
    n = x.size
    y = np.zeros(m, dtype=np.uint8)
    C = FFT_BLOCK_BITS
    for i0 in range(0, m, C):
        i1 = min(i0 + C, m)
        acc = np.zeros(i1 - i0, dtype=np.int64)
        for j0 in range(0, n, C):
            j1 = min(j0 + C, n)
            # Block (rows i0..i1, cols j0..j1) is Toeplitz with seed
            # s[i0 - j1 + n .. i1 - j0 + n - 2].
            lo = i0 - j1 + n
            hi = i1 - j0 + n - 1
            acc += _middle_product_fft(seed[lo:hi], x[j0:j1], i1 - i0)
        y[i0:i1] = (acc & 1).astype(np.uint8)
    return y


def toeplitz_hash(
    bits: np.ndarray,
    output_length: int,
    seed_bits: np.ndarray,
    method: Method = "auto",
    threads: bool = True,
) -> np.ndarray:
    """Hash n key bits to ``output_length`` bits with the Toeplitz matrix of ``seed_bits``.

    ``bits``: uint8 0/1 array (n bits). ``seed_bits``: uint8 0/1 array of n + m - 1 bits
    defining T[i, j] = seed[i - j + n - 1]. Returns y = T x mod 2 as a uint8 0/1 array of
    m bits, exactly (bit for bit equal to the dense matrix-vector product).
    ``method``: "clmul" (bit-packed Karatsuba with carry-less multiplication), "ternary"
    (Schönhage's ternary FFT over GF(2), quasi-linear), "auto" (the faster of those two
    for the size) or "fft" (float FFT convolution, blocked and rounding-checked).
    ``threads``: let the ternary FFT run on two threads, in a few coarse GIL-free tasks,
    when the transform is long enough to pay (about 1.4x at 10^7-10^8 bits on 2 cores);
    False keeps everything on the calling thread. The result is the same either way.
    Two-universal hashing: Krawczyk, CRYPTO '94; leftover hash lemma, Bennett et al. 1995.
    Raises :class:`qkdnet.errors.ParameterError` for malformed input.
    """
    x = _as_bits("bits", bits)
    n = x.size
    m = _check_lengths(n, output_length)
    s = _as_bits("seed_bits", seed_bits)
    if s.size != max(n + m - 1, 0):
        raise ParameterError(
            "seed_bits", f"must have n + m - 1 = {n + m - 1} bits for n = {n}, m = {m}; "
            f"got {s.size}"
        )
    return _hash(x, m, _Seed(s.size, bits=s), method, threads)


def _hash(x: np.ndarray, m: int, seed: _Seed, method: str, threads: bool) -> np.ndarray:
    n = x.size
    if method not in ("auto", "clmul", "ternary", "fft"):
        raise ParameterError(
            "method", f"must be 'auto', 'clmul', 'ternary' or 'fft', got {method!r}"
        )
    if m == 0:
        return np.zeros(0, dtype=np.uint8)
    if method == "auto":
        method = "ternary" if n * m >= TERNARY_FROM_NM else "clmul"
    if method == "clmul":
        return _toeplitz_clmul(x, m, seed)
    if method == "ternary":
        return _toeplitz_ternary(x, m, seed, threads)
    bits = seed.bits
    if bits is None:
        assert seed.raw is not None
        bits = np.unpackbits(np.frombuffer(seed.raw, dtype=np.uint8),
                             bitorder="little")[:seed.length]
    return _toeplitz_fft(x, m, bits)


def privacy_amplification(
    bits: np.ndarray,
    output_length: int,
    rng: np.random.Generator,
    method: Method = "auto",
    threads: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Compress a reconciled key to ``output_length`` secret bits with a random Toeplitz hash.

    ``bits``: the reconciled key, uint8 0/1 (n bits). ``output_length``: m bits, from the
    finite-key formula (e.g. Lim et al., PRA 89, 022307, 2014, Eq. 1); 0 <= m <= n.
    ``rng`` draws the n + m - 1 public seed bits (Alice draws them and sends them to Bob
    over the authenticated channel; they need not be secret).
    Returns (secret key of m bits, seed used), both uint8 0/1 arrays. ``method`` and
    ``threads`` as in :func:`toeplitz_hash`.
    """
    x = _as_bits("bits", bits)
    m = _check_lengths(x.size, output_length)
    length = max(x.size + m - 1, 0)
    raw = rng.bytes(-(-length // 8))
    # hash from the packed bytes directly; the 0/1 seed is unpacked only to return it
    key = _hash(x, m, _Seed(length, raw=raw), method, threads)
    seed = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), bitorder="little")[:length]
    return key, seed
