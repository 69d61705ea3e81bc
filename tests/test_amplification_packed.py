"""Packed and paired Toeplitz hashing: the same bits as toeplitz_hash and the dense product."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import ParameterError
from qkdnet.postprocessing._gf2 import cyclic_products_range
from qkdnet.postprocessing.amplification import (
    BitOrder,
    toeplitz_hash,
    toeplitz_hash_packed,
    toeplitz_hash_pair,
)


def dense(seed: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """Independent truth: T[i, j] = seed[i - j + n - 1] built by scipy, product mod 2."""
    n = x.size
    T = scipy.linalg.toeplitz(seed[n - 1:n - 1 + m], seed[n - 1::-1][:n]).astype(np.int64)
    return ((T @ x.astype(np.int64)) % 2).astype(np.uint8)


def garbage_tail(packed: np.ndarray, nbits: int, rng: np.random.Generator,
                 bitorder: BitOrder) -> np.ndarray:
    """Set the unused bits of the last byte at random: they must be ignored."""
    out = packed.copy()
    if nbits % 8:
        junk = np.uint8(int(rng.integers(0, 256)) & (0xFF ^ ((1 << (nbits % 8)) - 1)))
        if bitorder == "big":
            junk = np.uint8(int(f"{int(junk):08b}"[::-1], 2))
        out[..., -1] |= junk
    return out


@pytest.mark.parametrize("method", ["clmul", "ternary", "fft", "auto"])
@pytest.mark.parametrize("bitorder", ["little", "big"])
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 600), frac=st.floats(0, 1), s=st.integers(0, 2**32))
def test_packed_two_keys_equal_dense_product(method: str, bitorder: BitOrder, n: int, frac: float,
                                             s: int) -> None:
    rng = np.random.default_rng(s)
    m = max(1, int(frac * n))
    keys = rng.integers(0, 2, (2, n), dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    pk = garbage_tail(np.packbits(keys, axis=1, bitorder=bitorder), n, rng, bitorder)
    ps = garbage_tail(np.packbits(seed, bitorder=bitorder), n + m - 1, rng, bitorder)
    out = toeplitz_hash_packed(pk, n, m, ps, method, bitorder=bitorder)  # type: ignore[arg-type]
    assert out.shape == (2, -(-m // 8))
    for row, x in zip(out, keys, strict=True):
        assert np.array_equal(np.unpackbits(row, count=m, bitorder=bitorder), dense(seed, x, m))
        # unused output bits are zero
        assert np.array_equal(np.packbits(np.unpackbits(row, count=m, bitorder=bitorder),
                                          bitorder=bitorder), row)
    one = toeplitz_hash_packed(bytes(pk[1]), n, m, bytes(ps), method,  # type: ignore[arg-type]
                               bitorder=bitorder)
    assert np.array_equal(one, out[1])


@pytest.mark.parametrize("n,m", [(100_000, 5_000), (100_000, 45_000), (1_000_003, 150_001),
                                 (1_000_000, 450_000)])
def test_pair_and_packed_equal_single_calls_on_pipeline_sizes(n: int, m: int) -> None:
    # Sizes of the pipeline's range, both sides of the auto crossover; one and two threads.
    rng = np.random.default_rng(n + m)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a.copy()
    b[rng.integers(0, n, 20)] ^= 1  # Bob's key before Cascade
    raw = rng.bytes(-(-(n + m - 1) // 8))
    seed = np.unpackbits(np.frombuffer(raw, np.uint8), count=n + m - 1, bitorder="little")
    ya = toeplitz_hash(a, m, seed, "clmul" if n * m < 10**10 else "ternary")
    yb = toeplitz_hash(b, m, seed, "ternary", threads=False)
    for threads in (False, True):
        pa, pb = toeplitz_hash_pair(a, b, m, seed, threads=threads)
        assert np.array_equal(pa, ya) and np.array_equal(pb, yb)
        packed = toeplitz_hash_packed(
            np.stack([np.packbits(a, bitorder="little"), np.packbits(b, bitorder="little")]),
            n, m, raw, threads=threads)
        assert np.array_equal(np.unpackbits(packed[0], count=m, bitorder="little"), ya)
        assert np.array_equal(np.unpackbits(packed[1], count=m, bitorder="little"), yb)


def test_concurrent_calls_in_two_threads_use_their_own_work_arrays() -> None:
    # The pipeline hashes Alice's and Bob's keys on two threads at once; the work arrays
    # are per thread, so interleaved calls of different sizes must not disturb each other.
    rng = np.random.default_rng(9)
    jobs = []
    for n, m in [(300_000, 100_000), (200_000, 30_000), (250_000, 7_000)] * 2:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
        jobs.append((x, m, s, toeplitz_hash(x, m, s, "clmul")))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(toeplitz_hash, x, m, s, "ternary", False)
                   for x, m, s, _ in jobs for _ in range(3)]
        results = [f.result() for f in futures]
    for i, (_, _, _, truth) in enumerate(jobs):
        for r in results[3 * i:3 * i + 3]:
            assert np.array_equal(r, truth)


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_cyclic_products_range_against_numpy(k: int) -> None:
    # Several b against one a, any bit range of the cyclic product (wrapped chunks too),
    # on one thread and on two.
    rng = np.random.default_rng(k)
    na, nb = 2500 + 31 * k, 2100 + 7 * k

    def pack(bits: np.ndarray) -> np.ndarray:
        buf = np.zeros(-(-bits.size // 64) * 64 + 128, dtype=np.uint8)
        buf[:bits.size] = bits
        return np.packbits(buf, bitorder="little").view("<u8").astype(np.uint64)

    a = rng.integers(0, 2, na, dtype=np.uint8)
    bs = [rng.integers(0, 2, nb, dtype=np.uint8) for _ in range(3)]
    length = na + nb // 2  # shorter than the product: wrap-around is part of the test
    for start, count, parallel in [(0, 1, False), (17, 900, True), (na // 2, length - na // 2,
                                    False), (length - 5, 5, True)]:
        # two threads from 3^6 points on (k = 6 here)
        got = cyclic_products_range(pack(a), na, [(pack(b), nb) for b in bs], length, start,
                                    count, k, parallel)
        for g, b in zip(got, bs, strict=True):
            full = np.convolve(a.astype(np.int64), b.astype(np.int64)) % 2
            T = -(-length // 3**k) * 3**k  # the period D K the transform used
            assert length <= T
            cyc = np.zeros(T, dtype=np.int64)
            np.add.at(cyc, np.arange(full.size) % T, full)
            want = (cyc % 2)[start:start + count]
            assert np.array_equal(np.unpackbits(g.view(np.uint8), count=count,
                                                bitorder="little"), want)
            assert not np.unpackbits(g.view(np.uint8), bitorder="little")[count:].any()


def test_packed_bad_input() -> None:
    seed = bytes(3)
    with pytest.raises(ParameterError, match="keys"):
        toeplitz_hash_packed(bytes(3), 10, 5, seed)  # 10 bits need 2 bytes
    with pytest.raises(ParameterError, match="seed"):
        toeplitz_hash_packed(bytes(2), 10, 5, bytes(4))
    with pytest.raises(ParameterError, match="keys"):
        toeplitz_hash_packed(np.zeros(2, np.int64), 10, 5, seed)
    with pytest.raises(ParameterError, match="keys"):
        toeplitz_hash_packed(np.zeros((1, 1, 2), np.uint8), 10, 5, seed)
    with pytest.raises(ParameterError, match="output_length"):
        toeplitz_hash_packed(bytes(2), 10, 11, bytes(3))
    with pytest.raises(ParameterError, match="bitorder"):
        toeplitz_hash_packed(bytes(2), 10, 5, seed, bitorder="middle")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="^n|n:"):
        toeplitz_hash_packed(bytes(2), -1, 0, seed)
    with pytest.raises(ParameterError, match="bits_b"):
        toeplitz_hash_pair(np.ones(10, np.uint8), np.ones(9, np.uint8), 5, np.ones(14, np.uint8))
    assert toeplitz_hash_packed(bytes(2), 10, 0, bytes(2)).size == 0
