"""Cascade kernel helpers against independent plain-Python computations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from _cascade_util import random_affine


def _words(bits: np.ndarray, extra: int = 0) -> np.ndarray:
    """0/1 bytes packed LSB first into 64-bit words, zero-padded, plus ``extra`` zero
    words (the kernel's bitsets have n // 64 + 1 words)."""
    padded = np.zeros((((bits.size + 63) >> 6) + extra) * 64, dtype=np.uint8)
    padded[: bits.size] = bits
    return np.packbits(padded, bitorder="little").view("<u8")


@settings(max_examples=60, deadline=None)
@given(x=st.integers(0, 2**64 - 1))
def test_word_parity_is_the_parity_of_the_set_bits(x: int) -> None:
    from qkdnet.postprocessing._cascade_core import _word_parity

    assert _word_parity(np.uint64(x)) == bin(x).count("1") % 2


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 700),
    seed=st.integers(0, 2**32 - 1),
    cut=st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
def test_range_parity_of_a_bitset_equals_the_sum_of_its_bits(
    n: int, seed: int, cut: tuple[float, float]
) -> None:
    from qkdnet.postprocessing._cascade_core import _bits_range

    bits = np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8)
    words = np.zeros((2, (n >> 6) + 1), dtype=np.uint64)
    words[1] = _words(bits, int(n % 64 == 0))
    lo, hi = sorted(int(c * n) for c in cut)
    hi = max(hi, lo + 1)
    if hi > n:
        lo, hi = n - 1, n
    assert _bits_range(words, 1, lo, hi) == int(bits[lo:hi].sum()) % 2


@settings(max_examples=40, deadline=None)
@given(
    n=st.one_of(st.integers(2, 400), st.integers(400, 300_000)),
    nsend=st.integers(1, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_key_order_parities_of_the_first_blocks_equal_the_written_out_permutation(
    n: int, nsend: int, seed: int
) -> None:
    """The late passes' block parities (per key word, a mask from a table over the word's
    pass offset; prefix parities for several blocks) against the XOR over each block of
    the affine permutation written out; n up to 3e5 so that the table's buckets hold
    many offsets."""

    from qkdnet.postprocessing._cascade_core import _affine_prefix_parities

    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    mult, off = random_affine(rng, n)
    k = max(1, -(-n // 4))  # the n/4 pass: up to four blocks
    nsend = min(nsend, -(-n // k))
    words = _words(a)
    got = np.zeros(nsend, dtype=np.uint8)
    _affine_prefix_parities(got, nsend, k, words, n, off, pow(mult, -1, n))
    order = (mult * np.arange(n, dtype=np.int64) + off) % n
    want = [int(a[order[b * k : (b + 1) * k]].sum() % 2) for b in range(nsend)]
    assert got.tolist() == want


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3000),
    log_k=st.integers(0, 8),
    odd_k=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_block_parities_of_a_bitset_and_their_packing(
    n: int, log_k: int, odd_k: bool, seed: int
) -> None:
    """Block parities of a pass-order bitset (word folding for power-of-two blocks up to
    64, a range parity otherwise) and the LSB-first packing of the transcript, against
    sums over the plain bits."""
    from qkdnet.postprocessing._cascade_core import _bitset_block_parities, _put_bits

    k = (1 << log_k) + (3 if odd_k else 0)
    bits = np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8)
    words = _words(bits, int(n % 64 == 0))[None, :]
    nblk = -(-n // k)
    got = np.zeros(nblk, dtype=np.uint8)
    _bitset_block_parities(got, words, 0, k, nblk, n)
    want = np.array([bits[b * k : (b + 1) * k].sum() % 2 for b in range(nblk)], np.uint8)
    assert np.array_equal(got, want)
    buf = np.full(nblk // 8 + 2, 0xAA, dtype=np.uint8)
    end = _put_bits(buf, 1, want, nblk)
    assert end == 1 + (nblk + 7) // 8
    assert np.array_equal(buf[1:end], np.packbits(want, bitorder="little"))
