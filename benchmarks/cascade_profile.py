"""Cascade CPU time per 10^6 bits on one thread, and where a frame's fixed costs go.

    .venv/bin/python benchmarks/cascade_profile.py [--quick] [--repeats N]

Ours only (the peers are in benchmarks/reconciliation.py). For keys of 10^6 bits at QBER
1, 2, 3, 5 and 8 % (two frames of 5e5 bits, ``threads=1``): the median CPU time of this
thread per key (ms per 10^6 bits), the mean efficiency f = leak / (n h(Q)), the messages
per key and the keys left with residual errors. Then, for one frame of 5e5 bits, the
median time of the fixed pieces every frame pays whatever the QBER: the pass-order fill
of an affine pass and of the seeded pass (Alice's and Bob's bits), and the key-order
parity sweep of one half-key pass (eleven of them per frame) — the rest of a frame is
the search rounds, which grow with the QBER. The machine is shared: quote medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from qkdnet.postprocessing._cascade_core import (
    _affine_prefix_parities,
    _fill_bits,
    _fisher_yates,
    _words_moved,
    seeded_pass,
)
from qkdnet.postprocessing.cascade import reconcile_cascade

QBERS = (0.01, 0.02, 0.03, 0.05, 0.08)
FRAME = 500_000


def _keys(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    e = rng.random(n) < qber
    return a, a ^ e.astype(np.uint8), float(e.mean())


def _median_ms(fn, repeats: int) -> float:  # noqa: ANN001 - any zero-argument callable
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return 1e3 * statistics.median(times)


def keys(repeats: int) -> None:
    """CPU ms per 10^6-bit key on one thread, f, messages, keys with residual errors."""
    print("Cascade (optimised), 10^6-bit keys, one thread: CPU ms per key (median)")
    print(f"{'QBER':>6}{'CPU ms':>9}{'min ms':>9}{'Mb/CPU-s':>10}{'f':>8}{'msgs':>8}{'resid':>7}")
    for qber in QBERS:
        times, effs, msgs, bad = [], [], [], 0
        for r in range(repeats):
            a, b, q = _keys(10**6, qber, 1000 + r)
            t0 = time.thread_time()
            res = reconcile_cascade(a, b, q, np.random.default_rng(r), threads=1)
            times.append(time.thread_time() - t0)
            effs.append(res.efficiency)
            msgs.append(res.messages)
            bad += int(not np.array_equal(res.corrected_bits, a))
        ms = 1e3 * statistics.median(times)
        print(
            f"{qber:>6.2f}{ms:>9.2f}{1e3 * min(times):>9.2f}{1e3 / ms:>10.1f}"
            f"{statistics.mean(effs):>8.4f}{statistics.median(msgs):>8.0f}{bad:>4}/{repeats}"
        )


def fixed_parts(repeats: int) -> None:
    """Median ms of the pieces every 5e5-bit frame pays, independent of the QBER."""
    n = FRAME
    rng = np.random.default_rng(5)
    pe = rng.integers(0, 2**16, ((n + 63) >> 6) << 3).astype(np.uint16)
    moved = np.empty_like(pe)
    abits = np.empty((2, (n >> 6) + 1), dtype=np.uint64)
    ebits = np.empty_like(abits)
    mult, off, inv, word_seed = seeded_pass(12345, n)
    wrow = np.empty(n >> 6, dtype=np.int32)
    key_words = rng.integers(0, 2**63, (n + 63) >> 6).astype(np.uint64)
    par = np.zeros(4, dtype=np.uint8)

    def seeded() -> None:
        _fisher_yates(wrow, np.uint64(word_seed), n >> 6)
        _words_moved(pe, moved, wrow, n)
        _fill_bits(abits, ebits, 1, moved, n, mult, off)

    parts = {
        "affine pass fill (pass 1, searched late passes)": lambda: _fill_bits(
            abits, ebits, 0, pe, n, mult, off
        ),
        "seeded pass: word shuffle + move + fill (pass 2)": seeded,
        "half-key pass parity sweep (x11 per frame)": lambda: _affine_prefix_parities(
            par, 1, n // 2, key_words, n, off, inv
        ),
        "n/4 pass parity sweep, 3 blocks (x1)": lambda: _affine_prefix_parities(
            par, 3, 131_072, key_words, n, off, inv
        ),
    }
    for fn in parts.values():
        fn()  # compile / load
    print(f"\nFixed costs of one {n}-bit frame (median of {repeats}, ms)")
    for name, fn in parts.items():
        print(f"  {name:<52}{_median_ms(fn, repeats):>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 keys per QBER instead of 9")
    ap.add_argument("--repeats", type=int, default=0, help="keys per QBER (median)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 9)
    a, b, q = _keys(4096, 0.03, 0)
    reconcile_cascade(a, b, q, np.random.default_rng(0), threads=1)  # JIT warm-up
    keys(repeats)
    fixed_parts(50 if args.quick else 200)


if __name__ == "__main__":
    main()
