"""The classical randomness of `qkdnet postprocess`: cryptographic unless a seed is asked for."""

from __future__ import annotations

import numpy as np

from qkdnet._commands.postprocess import classical_generators


def test_without_seed_the_generators_are_aes_counter_and_fresh() -> None:
    first, second = classical_generators(None)
    assert type(first.bit_generator).__name__ == "AESCounter"
    assert type(second.bit_generator).__name__ == "AESCounter"
    a = first.integers(0, 2**63, 64)
    b = second.integers(0, 2**63, 64)
    again, _ = classical_generators(None)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, again.integers(0, 2**63, 64))


def test_with_a_seed_the_run_is_reproducible_and_streams_independent() -> None:
    first, second = classical_generators(7)
    first_again, _ = classical_generators(7)
    a = first.integers(0, 2**63, 64)
    assert np.array_equal(a, first_again.integers(0, 2**63, 64))
    assert not np.array_equal(a, second.integers(0, 2**63, 64))


def test_aes_counter_bits_are_balanced() -> None:
    # 10^6 bits: the count of ones stays within 5 standard deviations (500) of 500,000.
    generator, _ = classical_generators(None)
    ones = int(generator.integers(0, 2, 1_000_000, dtype=np.uint8).sum())
    assert abs(ones - 500_000) < 5 * 500
