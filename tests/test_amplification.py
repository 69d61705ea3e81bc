"""Privacy amplification: Toeplitz hashing is exact (against a dense matrix) and universal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdnet.errors import ParameterError
from qkdnet.postprocessing import amplification
from qkdnet.postprocessing.amplification import privacy_amplification, toeplitz_hash


def dense_toeplitz_product(seed: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    """Independent truth: build T[i, j] = seed[i - j + n - 1] with scipy and multiply."""
    n = x.size
    first_column = seed[n - 1:n - 1 + m]           # T[i, 0] = seed[i + n - 1]
    first_row = seed[n - 1::-1][:n]                 # T[0, j] = seed[n - 1 - j]
    T = scipy.linalg.toeplitz(first_column, first_row).astype(np.int64)
    assert T.shape == (m, n)
    return ((T @ x.astype(np.int64)) % 2).astype(np.uint8)


@st.composite
def problems(draw: st.DrawFn, max_n: int = 700) -> tuple[np.ndarray, int, np.ndarray]:
    n = draw(st.integers(1, max_n))
    m = draw(st.integers(1, n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    density = draw(st.sampled_from([0.5, 0.05, 0.95]))
    x = (rng.random(n) < density).astype(np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    return x, m, seed


@pytest.mark.parametrize("method", ["clmul", "ternary", "fft"])
@settings(max_examples=80, deadline=None)
@given(p=problems())
def test_every_method_equals_dense_product(
    method: str, p: tuple[np.ndarray, int, np.ndarray]
) -> None:
    x, m, seed = p
    assert np.array_equal(toeplitz_hash(x, m, seed, method=method),
                          dense_toeplitz_product(seed, x, m))


@pytest.mark.parametrize("n,m", [(64, 64), (128, 1), (1024, 512), (1023, 1023), (2000, 250)])
def test_word_boundaries_against_dense(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 7 + m)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    truth = dense_toeplitz_product(seed, x, m)
    for method in ("clmul", "ternary", "fft", "auto"):
        assert np.array_equal(toeplitz_hash(x, m, seed, method=method), truth)


def test_blocked_fft_equals_clmul(monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the blocked FFT path (used above 2^25 bits) on small sizes.
    monkeypatch.setattr(amplification, "FFT_BLOCK_BITS", 300)
    rng = np.random.default_rng(3)
    for n, m in [(1000, 999), (2500, 700), (4096, 4096)]:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
        assert np.array_equal(toeplitz_hash(x, m, seed, method="fft"),
                              toeplitz_hash(x, m, seed, method="clmul"))


@pytest.mark.parametrize("n,ratio", [(300_000, 0.125), (200_003, 0.5), (1_000_001, 0.2)])
def test_three_exact_methods_agree_on_large_input(n: int, ratio: float) -> None:
    rng = np.random.default_rng(n)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    m = int(n * ratio)
    key, seed = privacy_amplification(x, m, rng)
    assert key.size == m and seed.size == n + m - 1
    assert np.array_equal(key, toeplitz_hash(x, m, seed, method="fft"))
    assert np.array_equal(key, toeplitz_hash(x, m, seed, method="ternary"))
    assert np.array_equal(key, toeplitz_hash(x, m, seed, method="clmul"))
    for method in ("clmul", "ternary"):  # one thread and (where it pays) two
        assert np.array_equal(key, toeplitz_hash(x, m, seed, method=method, threads=False))


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6, 7, 8])
def test_ternary_transform_lengths_against_numpy_convolution(k: int) -> None:
    # Schönhage's product for every transform length 3^k, against an integer convolution.
    from qkdnet.postprocessing._gf2 import cyclic_product

    rng = np.random.default_rng(k)
    na, nb = 3000 + 17 * k, 2000 + 5 * k
    a = rng.integers(0, 2, na, dtype=np.uint8)
    b = rng.integers(0, 2, nb, dtype=np.uint8)

    def pack(bits: np.ndarray) -> np.ndarray:
        buf = np.zeros(-(-bits.size // 64) * 64 + 128, dtype=np.uint8)
        buf[:bits.size] = bits
        return np.packbits(buf, bitorder="little").view("<u8").astype(np.uint64)

    truth = np.convolve(a.astype(np.int64), b.astype(np.int64)) % 2
    for parallel in (False, True):  # two threads from 3^6 = 729 points on
        c, period = cyclic_product(pack(a), na, pack(b), nb, na + nb - 1, k, parallel=parallel)
        assert period >= na + nb - 1
        got = np.unpackbits(c.view(np.uint8), bitorder="little")[:na + nb - 1]
        assert np.array_equal(got, truth)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 3000), st.integers(0, 2**32))
def test_linearity(n: int, s: int) -> None:
    rng = np.random.default_rng(s)
    m = int(rng.integers(1, n + 1))
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(a ^ b, m, seed),
                          toeplitz_hash(a, m, seed) ^ toeplitz_hash(b, m, seed))


def test_two_universal_collision_rate() -> None:
    # For x != x' and a uniformly random Toeplitz seed, T(x ^ x') is uniform on {0,1}^m,
    # so Pr[T x = T x'] = 2^-m exactly. n = 40, m = 4, 2048 seeds: expected 128 collisions,
    # binomial sd = sqrt(2048 * 1/16 * 15/16) = 11; accept +-5 sd.
    rng = np.random.default_rng(42)
    n, m, trials = 40, 4, 2048
    x = rng.integers(0, 2, n, dtype=np.uint8)
    x2 = x.copy()
    x2[[3, 17]] ^= 1
    collisions = 0
    outputs = np.zeros(2**m, dtype=np.int64)
    weights = 1 << np.arange(m)
    for _ in range(trials):
        y, seed = privacy_amplification(x, m, rng)
        collisions += int(np.array_equal(y, toeplitz_hash(x2, m, seed)))
        outputs[int(y @ weights)] += 1
    sd = np.sqrt(trials / 16 * 15 / 16)
    assert abs(collisions - trials / 16) < 5 * sd
    # the output itself is uniform: chi-square with 15 dof, p = 1e-4 quantile ~ 44.3
    chi2 = float(np.sum((outputs - trials / 16) ** 2 / (trials / 16)))
    assert chi2 < 44.3


def test_seed_is_reproducible_and_fresh() -> None:
    x = np.random.default_rng(0).integers(0, 2, 5000, dtype=np.uint8)
    k1, s1 = privacy_amplification(x, 1000, np.random.default_rng(7))
    k2, s2 = privacy_amplification(x, 1000, np.random.default_rng(7))
    k3, s3 = privacy_amplification(x, 1000, np.random.default_rng(8))
    assert np.array_equal(k1, k2) and np.array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    assert set(np.unique(s1)) <= {0, 1} and 0.45 < s1.mean() < 0.55


def test_zero_output_and_bad_input() -> None:
    x = np.ones(10, np.uint8)
    assert toeplitz_hash(x, 0, np.zeros(9, np.uint8)).size == 0
    with pytest.raises(ParameterError, match="output_length"):
        toeplitz_hash(x, 11, np.zeros(20, np.uint8))
    with pytest.raises(ParameterError, match="seed_bits"):
        toeplitz_hash(x, 5, np.zeros(13, np.uint8))
    with pytest.raises(ParameterError, match="bits"):
        toeplitz_hash(np.full(10, 3, np.uint8), 5, np.zeros(14, np.uint8))
    with pytest.raises(ParameterError, match="method"):
        toeplitz_hash(x, 5, np.zeros(14, np.uint8), method="magic")  # type: ignore[arg-type]


@pytest.mark.parametrize("W", [1, 2, 3, 5, 7, 8, 12, 16, 40, 96])
def test_karatsuba_product_against_numpy_convolution(W: int) -> None:
    from qkdnet.postprocessing._gf2 import _kmul

    rng = np.random.default_rng(W)
    a = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    b = rng.integers(0, 2, 64 * W, dtype=np.uint8)
    buf = np.zeros(8 * W + 64, dtype=np.uint64)
    buf[:W] = np.packbits(a, bitorder="little").view("<u8")
    buf[W:2 * W] = np.packbits(b, bitorder="little").view("<u8")
    _kmul(buf, 0, W, 2 * W, W, 4 * W)
    got = np.unpackbits(buf[2 * W:4 * W].view(np.uint8), bitorder="little")[:128 * W - 1]
    truth = np.convolve(a.astype(np.int64), b.astype(np.int64)) % 2
    assert np.array_equal(got, truth)


@pytest.mark.parametrize("method", ["auto", "clmul", "ternary", "fft"])
@pytest.mark.parametrize("n,m", [(1, 1), (77, 13), (5003, 1001), (40_000, 39_999)])
def test_privacy_amplification_hashes_with_the_seed_it_returns(
    method: str, n: int, m: int
) -> None:
    # privacy_amplification hashes from the raw seed bytes (odd lengths: a partial last
    # byte); the key must be the Toeplitz hash under the 0/1 seed it hands back.
    rng = np.random.default_rng(n + m)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    key, seed = privacy_amplification(x, m, rng, method=method)  # type: ignore[arg-type]
    assert seed.size == n + m - 1
    assert np.array_equal(key, dense_toeplitz_product(seed, x, m) if n < 6000
                          else toeplitz_hash(x, m, seed, method="clmul"))


def test_portable_carry_less_path_gives_the_same_results(tmp_path: Path) -> None:
    # CPUs without PCLMULQDQ (ARM, old x86) run the shift-and-xor fallback: force it in a
    # fresh interpreter with its own Numba cache and compare with the dense product.
    code = """
import numpy as np, scipy.linalg
from qkdnet.postprocessing import _gf2
from qkdnet.postprocessing.amplification import toeplitz_hash
from qkdnet.postprocessing.verification import verification_hash
assert not _gf2.HAS_PCLMUL
rng = np.random.default_rng(11)
for n, m in [(700, 300), (2000, 1999)]:
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    T = scipy.linalg.toeplitz(s[n - 1:n - 1 + m], s[n - 1::-1][:n]).astype(np.int64)
    truth = (T @ x.astype(np.int64)) % 2
    for method in ("clmul", "ternary"):
        assert np.array_equal(toeplitz_hash(x, m, s, method=method), truth), method
print(verification_hash(np.ones(100, np.uint8), np.array([3], np.uint64)).hex())
"""
    env = dict(os.environ, QKDNET_SOFT_CLMUL="1", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    from qkdnet.postprocessing.verification import verification_hash

    hw = verification_hash(np.ones(100, np.uint8), np.array([3], np.uint64)).hex()
    assert out.stdout.strip() == hw


# Hashes of two keys deep enough for Karatsuba; run here and in a fresh interpreter.
_CLMUL_DIGEST = """
import hashlib, numpy as np
from qkdnet.postprocessing.amplification import toeplitz_hash
def clmul_digest():
    rng = np.random.default_rng(5)
    digest = hashlib.sha256()
    for n, m in [(300_000, 120_000), (1_000_003, 499_999)]:
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
        digest.update(np.packbits(toeplitz_hash(x, m, s, method="clmul")).tobytes())
    return digest.hexdigest()
"""


def test_128_bit_clmul_path_gives_the_same_hashes_as_the_default_path(tmp_path: Path) -> None:
    # On hosts with 512-bit VPCLMULQDQ the default path never runs the 128-bit Karatsuba base
    # case that hosts without it use; run that one in a fresh interpreter (own Numba cache)
    # and compare the keys bit for bit.
    code = _CLMUL_DIGEST + """
from qkdnet.postprocessing import _gf2
assert not _gf2.HAS_VPCLMUL512
print(clmul_digest())
"""
    env = dict(os.environ, QKDNET_NO_VPCLMUL512="1", NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    here: dict[str, Any] = {}
    exec(_CLMUL_DIGEST, here)
    assert out.stdout.strip() == here["clmul_digest"]()
