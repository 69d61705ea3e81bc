"""GF(2)[x] kernels of _gf2 against independent references (NumPy integer convolution,
bit-by-bit Python)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.postprocessing._gf2 import (
    TMVP_BASE_WORDS,
    _kmul,
    _kmul_base,
    _tmvp_base_even,
    _tmvp_rec,
    _xor_bits,
)


def _pack(bits: np.ndarray) -> np.ndarray:
    return np.packbits(bits, bitorder="little").view("<u8").astype(np.uint64)


def _unpack(words: np.ndarray, nbits: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:nbits]


@pytest.mark.parametrize("W", list(range(1, 67)) + [70, 96, 100, 128, 130, 192, 200])
def test_karatsuba_every_size_at_unaligned_offsets(W: int) -> None:
    # Every leaf size (even digit counts, odd ones, odd word counts) and a few recursive
    # sizes, with operands at odd word offsets (the 512-bit loads are unaligned).
    rng = np.random.default_rng(1000 + W)
    a = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    b = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    buf = rng.integers(0, 2**63, 8 * W + 80, dtype=np.uint64)  # garbage everywhere else
    ao, bo, co, wo = 3, W + 5, 2 * W + 7, 4 * W + 9
    buf[ao:ao + W] = _pack(a)
    buf[bo:bo + W] = _pack(b)
    before = buf.copy()
    _kmul(buf, ao, bo, co, W, wo)
    truth = np.convolve(a.astype(np.int64), b.astype(np.int64)) % 2
    assert np.array_equal(_unpack(buf[co:co + 2 * W], 128 * W - 1), truth)
    assert buf[co + 2 * W - 1] >> np.uint64(63) == 0
    # operands intact, nothing written outside the product and the scratch
    assert np.array_equal(buf[:co], before[:co])
    assert np.array_equal(buf[wo + 4 * W + 16:], before[wo + 4 * W + 16:])


@pytest.mark.parametrize("W", [2, 4, 6, 8, 24, 26, 64])
def test_base_case_of_two_equal_operands_and_of_zeros(W: int) -> None:
    # a * a = a(x^2) over GF(2) (squaring spreads the bits), and 0 * b = 0.
    rng = np.random.default_rng(W)
    a = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    buf = np.zeros(8 * W + 64, dtype=np.uint64)
    buf[:W] = _pack(a)
    buf[W:2 * W] = buf[:W]
    _kmul_base(buf, 0, W, 2 * W, W, 4 * W)
    spread = np.zeros(128 * W, dtype=np.uint8)
    spread[::2] = a
    assert np.array_equal(_unpack(buf[2 * W:4 * W], 128 * W), spread)
    buf[:W] = 0
    _kmul_base(buf, 0, W, 2 * W, W, 4 * W)
    assert not buf[2 * W:4 * W].any()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 300), st.integers(0, 300), st.integers(0, 600), st.integers(0, 2**32))
def test_xor_bits_against_bit_by_bit(dbit: int, sbit: int, nbits: int, s: int) -> None:
    rng = np.random.default_rng(s)
    src_bits = rng.integers(0, 2, 64 * 16, dtype=np.uint8)
    src_bits[sbit + nbits:] = 0  # the padding past the source range _xor_bits may read
    dst_bits = rng.integers(0, 2, 64 * 16, dtype=np.uint8)
    dst = np.concatenate([np.zeros(1, np.uint64), _pack(dst_bits)])
    src = np.concatenate([np.zeros(2, np.uint64), _pack(src_bits), np.zeros(1, np.uint64)])
    _xor_bits(dst, 1, dbit, src, 2, sbit, nbits)
    want = dst_bits.copy()
    want[dbit:dbit + nbits] ^= src_bits[sbit:sbit + nbits]
    assert dst[0] == 0
    assert np.array_equal(_unpack(dst[1:], 64 * 16), want)


@pytest.mark.parametrize("W", list(range(4, 67, 2)) + [96, 128, 200, 256])
def test_toeplitz_product_every_size_at_unaligned_offsets(W: int) -> None:
    # y = T(a) x with T[i, j] = a[i - j + 64W - 1] (bits) is bits 64W-1 .. 128W-2 of the
    # product a(z) x(z): checked against numpy's integer convolution, at odd word offsets,
    # for the even-W base case and for the Karatsuba split above it.
    rng = np.random.default_rng(2000 + W)
    a = rng.integers(0, 2, 128 * W, dtype=np.uint8)
    x = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    truth = (np.convolve(a.astype(np.int64), x.astype(np.int64)) % 2)[64 * W - 1:128 * W - 1]
    kernels = [_tmvp_rec] + ([_tmvp_base_even] if W <= TMVP_BASE_WORDS else [])
    for kernel in kernels:
        buf = rng.integers(0, 2**63, 8 * W + 80, dtype=np.uint64)
        ao, xo, yo, wo = 3, 2 * W + 5, 3 * W + 7, 4 * W + 9
        buf[ao:ao + 2 * W] = _pack(a)
        buf[xo:xo + W] = _pack(x)
        before = buf.copy()
        kernel(buf, ao, xo, yo, W, wo)
        assert np.array_equal(_unpack(buf[yo:yo + W], 64 * W), truth), kernel
        assert np.array_equal(buf[:yo], before[:yo])  # seed and x intact
        assert np.array_equal(buf[wo + max(4 * W, 3 * W + 28):],
                              before[wo + max(4 * W, 3 * W + 28):])
