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

Entry points: :func:`toeplitz_hash` (0/1 arrays), :func:`toeplitz_hash_packed` (packed
bytes in and out, one key or several under one seed), :func:`toeplitz_hash_pair` (two
keys, one seed: the seed's transform is computed once), :func:`privacy_amplification`
(draws the seed). All give the same bits.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import numpy as np
import scipy.fft

from qkdnet.errors import ParameterError
from qkdnet.postprocessing._gf2 import (
    HAS_VPCLMUL512,
    _workspace,
    _xor_bits,
    block_words,
    cyclic_products_range,
    tmvp_blocks,
)

__all__ = ["privacy_amplification", "toeplitz_hash", "toeplitz_hash_packed", "toeplitz_hash_pair"]

Method = Literal["auto", "clmul", "ternary", "fft"]
BitOrder = Literal["little", "big"]

#: "auto" uses Schönhage's ternary FFT (cost ~ n log n) instead of the Karatsuba Toeplitz
#: product (cost ~ n m^0.58) from this output length on. Measured on the dev machine (CPU
#: time, one thread, 512-bit VPCLMULQDQ leaves), Karatsuba vs FFT: n = 1e5, m = 45000:
#: 0.10 vs 0.13 ms; n = 4e5, m = 80000: 0.38 vs 0.43, m = 120000: 0.61 vs 0.52;
#: n = 1e6, m = 50000: 0.73 vs 0.99, m = 100000: 1.05 vs 0.98, m = 150000: 1.43 vs 1.04;
#: n = 3e6, m = 60000: 2.5 vs 3.2, m = 150000: 4.1 vs 3.3. Without 512-bit VPCLMULQDQ the
#: Karatsuba base case is word by word, 3-4x slower, and the crossover was measured at
#: m ~ 5000-8000 (n = 1e5, m = 5000 even; n = 2e5, m = 4000: 0.13 vs 0.20 ms).
TERNARY_FROM_M = 100_000 if HAS_VPCLMUL512 else 6144

#: Largest number of input (and output) bits handled by one FFT; larger problems are cut
#: into blocks. 2^25 keeps every convolution value < 2^25 and the transform length <= 2^26.
FFT_BLOCK_BITS = 1 << 25

#: Byte with its bit order reversed (big-endian packing <-> little-endian packing).
_REVERSED_BYTE = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


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


def _words(packed: np.ndarray, nbits: int, lead_zeros: int, total_words: int,
           slot: str) -> np.ndarray:
    """Bits 0 .. nbits-1 of ``packed`` (uint8, little-endian bit order; bits past nbits
    ignored) as ``total_words`` uint64 words, after ``lead_zeros`` zero bits, zero
    elsewhere. The array is this thread's work array ``slot``, valid until its next use."""
    out = _workspace(slot, total_words)
    out.fill(0)
    nbytes = -(-nbits // 8)
    if lead_zeros % 8 == 0:
        start = lead_zeros // 8
        view = out.view(np.uint8)
        view[start:start + nbytes] = packed[:nbytes]
        if nbits % 8:
            view[start + nbytes - 1] &= (1 << (nbits % 8)) - 1
        return out
    src = _words(packed, nbits, 0, -(-nbits // 64) + 1, slot + "/unshifted")
    _xor_bits(out, 0, lead_zeros, src, 0, 0, nbits)
    return out


def _trimmed(words: np.ndarray, m: int) -> np.ndarray:
    """The first ceil(m/8) bytes of ``words``, bits past m cleared (a new array)."""
    out = words.view(np.uint8)[:-(-m // 8)].copy()
    if m % 8:
        out[-1] &= (1 << (m % 8)) - 1
    return out


@functools.lru_cache(maxsize=256)
def _clmul_blocks(n_words: int, m_words: int) -> tuple[int, int, int]:
    """Square block size B (words) and the P x Q blocks covering the m x n matrix.

    Each B-word block costs ~ B^log2(3) (Karatsuba); the candidates are the sizes that
    cover the rows in P = 1, 2 or 4 blocks and those that cover the columns in Q <= 8
    blocks, and the cheapest P Q B^log2(3) wins: B = m rounded up can leave most of
    the last column block empty (n = 1e5, m = 45000: three 704-word blocks over 1563
    columns; two 800-word ones are 18 % cheaper and measured so).
    """
    best: tuple[float, int, int, int] | None = None
    cands = {block_words(-(-m_words // p)) for p in (1, 2, 4)}
    for q in range(1, 9):  # with more column blocks the last one wastes at most 1/8
        B = block_words(-(-n_words // q))
        if m_words <= 4 * B:
            cands.add(B)
    for B in cands:
        P = -(-m_words // B)
        Q = -(-n_words // B)
        cost = P * Q * float(B) ** 1.585
        if best is None or cost < best[0]:
            best = (cost, B, P, Q)
    assert best is not None
    return best[1], best[2], best[3]


def _toeplitz_clmul(seed: np.ndarray, keys: Sequence[np.ndarray], n: int,
                    m: int) -> list[np.ndarray]:
    B, P, Q = _clmul_blocks(-(-n // 64), -(-m // 64))
    # Zero bits in front of x (d of them) leave y unchanged with the same seed indexing:
    # T'[i, j'] = s[i - j' + n' - 1] with x'_{j'} = x_{j' - d}, n' = n + d.
    d = Q * B * 64 - n
    sw = _words(seed, n + m - 1, 0, (P + Q) * B, "seed")
    return [_trimmed(tmvp_blocks(sw, _words(x, n, d, Q * B, "key"), B, P, Q), m) for x in keys]


def _toeplitz_ternary(seed: np.ndarray, keys: Sequence[np.ndarray], n: int, m: int,
                      parallel: bool) -> list[np.ndarray]:
    """y = bits n-1 .. n+m-2 of s(x) x(x) mod x^T - 1, T >= n + m - 1 (no wrap-around into
    those bits: the full product has no terms beyond 2n + m - 3). The seed is
    transformed once for all keys."""
    length = n + m - 1
    sw = _words(seed, length, 0, -(-length // 64) + 2, "seed")
    xs = [(_words(x, n, 0, -(-n // 64) + 2, f"key{i}"), n) for i, x in enumerate(keys)]
    ys = cyclic_products_range(sw, length, xs, length, n - 1, m, parallel=parallel)
    return [_trimmed(y, m) for y in ys]


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


def _hash_packed(seed: np.ndarray, keys: Sequence[np.ndarray], n: int, m: int, method: str,
                 threads: bool) -> list[np.ndarray]:
    """The Toeplitz hashes of ``keys`` (each n bits, packed little-endian) under the packed
    seed of n + m - 1 bits, packed (ceil(m/8) bytes, bits past m zero)."""
    if method not in ("auto", "clmul", "ternary", "fft"):
        raise ParameterError(
            "method", f"must be 'auto', 'clmul', 'ternary' or 'fft', got {method!r}"
        )
    if m == 0:
        return [np.zeros(0, dtype=np.uint8) for _ in keys]
    if method == "auto":
        method = "ternary" if m >= TERNARY_FROM_M else "clmul"
    if method == "clmul":
        return _toeplitz_clmul(seed, keys, n, m)
    if method == "ternary":
        return _toeplitz_ternary(seed, keys, n, m, threads)
    s = np.unpackbits(seed, count=n + m - 1, bitorder="little")
    return [np.packbits(_toeplitz_fft(np.unpackbits(x, count=n, bitorder="little"), m, s),
                        bitorder="little") for x in keys]


def _unpacked(packed: np.ndarray, m: int) -> np.ndarray:
    return np.unpackbits(packed, count=m, bitorder="little")


def _seed_for(n: int, m: int, seed_bits: np.ndarray) -> np.ndarray:
    s = _as_bits("seed_bits", seed_bits)
    if s.size != max(n + m - 1, 0):
        raise ParameterError(
            "seed_bits", f"must have n + m - 1 = {n + m - 1} bits for n = {n}, m = {m}; "
            f"got {s.size}"
        )
    return np.packbits(s, bitorder="little")


def toeplitz_hash(
    bits: np.ndarray,
    output_length: int,
    seed_bits: np.ndarray,
    method: Method = "auto",
    threads: bool = False,
) -> np.ndarray:
    """Hash n key bits to ``output_length`` bits with the Toeplitz matrix of ``seed_bits``.

    ``bits``: uint8 0/1 array (n bits). ``seed_bits``: uint8 0/1 array of n + m - 1 bits
    defining T[i, j] = seed[i - j + n - 1]. Returns y = T x mod 2 as a uint8 0/1 array of
    m bits, exactly (bit for bit equal to the dense matrix-vector product).
    ``method``: "clmul" (bit-packed Karatsuba with carry-less multiplication), "ternary"
    (Schönhage's ternary FFT over GF(2), quasi-linear), "auto" (the faster of those two
    for the size) or "fft" (float FFT convolution, blocked and rounding-checked).
    ``threads``: True lets the ternary FFT run on two threads, in a few coarse GIL-free
    tasks, from 3^6 transform points (n + m >~ 3e6 bits): less wall time when a second
    core is idle (1e7 bits: 19.5 -> 12.1 ms), but more CPU time (+4-8 % at 1e7, +20 % at
    3e6) and no gain when the other core is busy (e.g. the other end's hash or the next
    block), hence off by default. The result is the same either way.
    Two-universal hashing: Krawczyk, CRYPTO '94; leftover hash lemma, Bennett et al. 1995.
    Raises :class:`qkdnet.errors.ParameterError` for malformed input.
    """
    x = _as_bits("bits", bits)
    m = _check_lengths(x.size, output_length)
    seed = _seed_for(x.size, m, seed_bits)
    (y,) = _hash_packed(seed, [np.packbits(x, bitorder="little")], x.size, m, method, threads)
    return _unpacked(y, m)


def toeplitz_hash_pair(
    bits_a: np.ndarray,
    bits_b: np.ndarray,
    output_length: int,
    seed_bits: np.ndarray,
    method: Method = "auto",
    threads: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(toeplitz_hash(bits_a, ...), toeplitz_hash(bits_b, ...))`` with the seed prepared
    once: Alice's and Bob's keys hashed under the same public seed in one process (a
    simulation; a deployment hashes one key per machine). With the ternary FFT the seed's
    transform is shared: 5 transforms instead of 6. Same arguments, results and errors as
    :func:`toeplitz_hash` (both keys n bits, 0/1 uint8)."""
    xa = _as_bits("bits_a", bits_a)
    xb = _as_bits("bits_b", bits_b)
    if xb.size != xa.size:
        raise ParameterError("bits_b", f"must have as many bits as bits_a ({xa.size}), "
                             f"got {xb.size}")
    m = _check_lengths(xa.size, output_length)
    seed = _seed_for(xa.size, m, seed_bits)
    keys = [np.packbits(xa, bitorder="little"), np.packbits(xb, bitorder="little")]
    ya, yb = _hash_packed(seed, keys, xa.size, m, method, threads)
    return _unpacked(ya, m), _unpacked(yb, m)


def _as_packed(name: str, data: np.ndarray | bytes, nbits: int, ndim: tuple[int, ...],
               bitorder: str) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray) \
        else np.asarray(data)
    if arr.ndim not in ndim or arr.dtype != np.uint8:
        raise ParameterError(name, f"must be a {' or '.join(f'{d}-D' for d in ndim)} uint8 "
                             f"array of packed bits, got {arr.dtype} of shape {arr.shape}")
    if arr.shape[-1] != -(-nbits // 8):
        raise ParameterError(name, f"must hold ceil({nbits} / 8) = {-(-nbits // 8)} bytes "
                             f"per key/seed, got {arr.shape[-1]}")
    return _REVERSED_BYTE[arr] if bitorder == "big" else arr


def toeplitz_hash_packed(
    keys: np.ndarray | bytes,
    n: int,
    output_length: int,
    seed: np.ndarray | bytes,
    method: Method = "auto",
    threads: bool = False,
    bitorder: BitOrder = "little",
) -> np.ndarray:
    """:func:`toeplitz_hash` on packed bits: no 0/1 arrays to pack or unpack.

    ``keys``: one key of n bits as ceil(n/8) bytes (bytes or a 1-D uint8 array), or several
    keys as the rows of a 2-D uint8 array (e.g. Alice's and Bob's: the seed is prepared
    once for all rows, as in :func:`toeplitz_hash_pair`). ``seed``: the n + m - 1 seed
    bits as ceil((n + m - 1)/8) bytes, e.g. ``rng.bytes(...)`` as drawn. ``bitorder``:
    "little" (bit k is bit k % 8 of byte k // 8, as ``np.packbits(..., bitorder="little")``
    and as the seed drawn by :func:`privacy_amplification`) or "big" (NumPy's default
    packing). Bits past the end in the last byte are ignored. Returns the hash, m bits as
    ceil(m/8) bytes (uint8, same bit order, unused bits zero): a 1-D array for one key, a
    2-D array with one row per key for several. Raises ParameterError for bad input.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ParameterError("n", f"must be a non-negative integer number of bits, got {n!r}")
    n = int(n)
    m = _check_lengths(n, output_length)
    if bitorder not in ("little", "big"):
        raise ParameterError("bitorder", f"must be 'little' or 'big', got {bitorder!r}")
    x = _as_packed("keys", keys, n, (1, 2), bitorder)
    s = _as_packed("seed", seed, max(n + m - 1, 0), (1,), bitorder)
    rows = [x] if x.ndim == 1 else list(x)
    ys = _hash_packed(s, rows, n, m, method, threads)
    out = ys[0] if x.ndim == 1 else np.stack(ys) if ys else np.zeros((0, -(-m // 8)), np.uint8)
    return _REVERSED_BYTE[out] if bitorder == "big" else out


def privacy_amplification(
    bits: np.ndarray,
    output_length: int,
    rng: np.random.Generator,
    method: Method = "auto",
    threads: bool = False,
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
    raw = np.frombuffer(rng.bytes(-(-length // 8)), dtype=np.uint8)
    # hash from the packed bytes directly; the 0/1 seed is unpacked only to return it
    (key,) = _hash_packed(raw, [np.packbits(x, bitorder="little")], x.size, m, method, threads)
    return _unpacked(key, m), np.unpackbits(raw, count=length, bitorder="little")
