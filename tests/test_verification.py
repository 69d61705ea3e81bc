"""Verification: GF(2^64) arithmetic against a pure-Python reference, tag properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import ParameterError, VerificationFailed
from qkdnet.postprocessing import _gf2
from qkdnet.postprocessing.verification import (
    verification_epsilon,
    verification_hash,
    verify_keys,
)

POLY = (1 << 64) | 0x1B  # z^64 + z^4 + z^3 + z + 1
U64 = st.integers(min_value=0, max_value=2**64 - 1)


def ref_clmul(a: int, b: int) -> int:
    r = 0
    for i in range(64):
        if (b >> i) & 1:
            r ^= a << i
    return r


def ref_gf64_mul(a: int, b: int) -> int:
    r = ref_clmul(a, b)
    for bit in range(127, 63, -1):  # long division by the field polynomial
        if (r >> bit) & 1:
            r ^= POLY << (bit - 64)
    return r


def ref_hash(bits: np.ndarray, key: int) -> int:
    n = bits.size
    blocks = []
    for w in range(-(-n // 64)):
        chunk = bits[64 * w:64 * (w + 1)]
        blocks.append(sum(int(b) << i for i, b in enumerate(chunk)))
    blocks.append(n)
    h = 0
    for b in blocks:
        h = ref_gf64_mul(h ^ b, key)
    return h


@settings(max_examples=200, deadline=None)
@given(U64, U64)
def test_clmul_matches_reference(a: int, b: int) -> None:
    lo, hi = _gf2.clmul(np.uint64(a), np.uint64(b))
    assert int(lo) | (int(hi) << 64) == ref_clmul(a, b)
    lo, hi = _gf2.clmul_soft(np.uint64(a), np.uint64(b))
    assert int(lo) | (int(hi) << 64) == ref_clmul(a, b)


@settings(max_examples=100, deadline=None)
@given(U64, U64, U64, U64)
def test_clmul2x2_matches_reference(a0: int, a1: int, b0: int, b1: int) -> None:
    # 128 x 128-bit carry-less product (the Karatsuba base case), hardware and portable
    truth = ref_clmul(a0, b0) ^ ((ref_clmul(a0, b1) ^ ref_clmul(a1, b0)) << 64) ^ (
        ref_clmul(a1, b1) << 128)
    for fn in (_gf2.clmul2x2, _gf2.clmul2x2_soft):
        words = fn(np.uint64(a0), np.uint64(a1), np.uint64(b0), np.uint64(b1))
        assert sum(int(w) << (64 * i) for i, w in enumerate(words)) == truth


@settings(max_examples=200, deadline=None)
@given(U64, U64)
def test_gf64_mul_matches_reference(a: int, b: int) -> None:
    assert int(_gf2.gf64_mul(np.uint64(a), np.uint64(b))) == ref_gf64_mul(a, b)
    assert int(_gf2.gf64_mul_soft(np.uint64(a), np.uint64(b))) == ref_gf64_mul(a, b)


def test_field_polynomial_is_irreducible() -> None:
    # Rabin's test for degree 64 = 2^6: z^(2^64) = z mod f and gcd(z^(2^32) - z, f) = 1.
    def mulmod(a: int, b: int) -> int:
        return ref_gf64_mul(a, b)

    def frobenius(x: int, times: int) -> int:
        for _ in range(times):
            x = mulmod(x, x)
        return x

    def poly_mod(a: int, b: int) -> int:
        while a and a.bit_length() >= b.bit_length():
            a ^= b << (a.bit_length() - b.bit_length())
        return a

    def poly_gcd(a: int, b: int) -> int:
        while b:
            a, b = b, poly_mod(a, b)
        return a

    z = 2
    assert frobenius(z, 64) == z
    assert poly_gcd(POLY, frobenius(z, 32) ^ z) == 1


def test_gf64_field_axioms_on_samples() -> None:
    rng = np.random.default_rng(1)
    z = np.uint64(2)
    assert int(_gf2.gf64_mul(np.uint64(1 << 63), z)) == 0x1B  # z^64 = z^4 + z^3 + z + 1
    for a, b, c in rng.integers(0, 2**64, size=(50, 3), dtype=np.uint64):
        def mul(x: int, y: int) -> int:
            return int(_gf2.gf64_mul(np.uint64(x), np.uint64(y)))

        assert mul(mul(a, b), c) == mul(a, mul(b, c))
        assert mul(a, int(b) ^ int(c)) == mul(a, b) ^ mul(a, c)


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=300), U64, st.integers(0, 2**32))
def test_hash_matches_reference(n: int, key: int, seed: int) -> None:
    bits = np.random.default_rng(seed).integers(0, 2, n, dtype=np.uint8)
    tag = verification_hash(bits, np.array([key], dtype=np.uint64))
    assert int.from_bytes(tag, "little") == ref_hash(bits, key)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 2000), st.integers(0, 2**32))
def test_hash_is_linear_for_equal_lengths(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = rng.integers(0, 2, n, dtype=np.uint8)
    key = rng.integers(0, 2**64, 1, dtype=np.uint64)
    h = [int.from_bytes(verification_hash(v, key), "little")
         for v in (a, b, a ^ b, np.zeros(n, np.uint8))]
    assert h[0] ^ h[1] == h[2] ^ h[3]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 2**32), st.sampled_from([64, 128]))
def test_equal_keys_pass_with_exact_accounting(n: int, seed: int, tag_bits: int) -> None:
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    res = verify_keys(key, key.copy(), rng, tag_bits=tag_bits)
    assert res.leaked_bits == tag_bits
    assert len(res.tag) == tag_bits // 8
    assert res.seed.size == tag_bits // 64
    per_word = (-(-n // 64) + 1) / 2.0**64
    assert res.epsilon_cor == pytest.approx(per_word ** (tag_bits // 64), rel=1e-12)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 5000), st.integers(0, 2**32), st.integers(1, 5))
def test_differing_keys_fail(n: int, seed: int, errors: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a.copy()
    flips = rng.choice(n, size=min(errors, n), replace=False)
    b[flips] ^= 1
    with pytest.raises(VerificationFailed):
        verify_keys(a, b, rng)


def test_epsilon_formula_and_published_scale() -> None:
    # A 10^6-bit block with a 64-bit tag: (15625 + 1) / 2^64 ~ 8.5e-16, below the
    # ε_cor = 1e-15 of Lim et al. 2014.
    assert verification_epsilon(10**6) == pytest.approx(15626 / 2**64)
    assert verification_epsilon(10**6) < 1e-15
    assert verification_epsilon(10**6, 128) == pytest.approx((15626 / 2**64) ** 2)


def test_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="bob_bits"):
        verify_keys(np.zeros(10, np.uint8), np.zeros(11, np.uint8), rng)
    with pytest.raises(ParameterError, match="tag_bits"):
        verify_keys(np.zeros(10, np.uint8), np.zeros(10, np.uint8), rng, tag_bits=32)
    with pytest.raises(ParameterError, match="alice_bits"):
        verify_keys(np.full(10, 2, np.uint8), np.zeros(10, np.uint8), rng)
