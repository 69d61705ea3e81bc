"""Helpers shared by the Cascade kernel tests."""

from __future__ import annotations

from math import gcd

import numpy as np


def random_affine(rng: np.random.Generator, n: int) -> tuple[int, int]:
    """A random affine pass permutation t -> (mult t + off) mod n: mult uniform among the
    units mod n (1 for n <= 2), off uniform in [0, n)."""
    mult = 1
    if n > 2:
        mult = int(rng.integers(1, n))
        while gcd(mult, n) != 1:
            mult = int(rng.integers(1, n))
    return mult, int(rng.integers(0, n))
