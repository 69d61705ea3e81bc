"""Benchmark: event-level Monte-Carlo of decoy BB84, pulses simulated per second.

Goal (issue 3): >= 50 million pulses per second on this machine. Prints the median of
several runs at several distances, and beside it a naive photon-by-photon NumPy simulation
of the same link (every pulse materialised), as the reference an implementer would write
first, with the ratio.

    .venv/bin/python benchmarks/sampling.py            # 1e9 pulses per run, 5 runs
    .venv/bin/python benchmarks/sampling.py --quick    # 1e8 pulses, 3 runs
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.sampling import simulate_block

GOAL_PULSES_PER_S = 50e6


def naive(link: LinkSpec, n: int, rng: np.random.Generator) -> int:
    """Photon-by-photon simulation of n pulses (all arrays of length n); returns detections."""
    mu = np.asarray(link.intensities)
    k = rng.choice(len(mu), size=n, p=link.intensity_probabilities)
    a_basis = rng.integers(0, 2, n)
    b_basis = rng.integers(0, 2, n)
    arrived = rng.binomial(rng.poisson(mu[k]), link.total_transmittance)
    p_right = np.where(a_basis == b_basis, 1.0 - link.misalignment_error, 0.5)
    right = rng.binomial(arrived, p_right)
    wrong = arrived - right
    clicks = (right > 0) | (wrong > 0) | (rng.random(n) < 2 * link.dark_count_probability)
    return int(clicks.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1e8 pulses, 3 runs")
    args = parser.parse_args()
    pulses = 10**8 if args.quick else 10**9
    runs = 3 if args.quick else 5
    naive_pulses = 2 * 10**6
    print(f"event-level sampler, {pulses:.0e} pulses per run, median of {runs} runs")
    print(f"{'distance':>9} {'detections':>11} {'ours Mpulse/s':>14} {'goal':>6} "
          f"{'naive Mpulse/s':>15} {'ratio':>7}")
    for distance in (0.0, 25.0, 50.0, 100.0):
        link = LinkSpec(length_km=distance)
        rng = np.random.default_rng(1)
        times = []
        det = 0
        for _ in range(runs):
            t = time.perf_counter()
            det = simulate_block(link, pulses, rng).detections
            times.append(time.perf_counter() - t)
        ours = pulses / statistics.median(times) / 1e6
        ntimes = []
        for _ in range(3):
            t = time.perf_counter()
            naive(link, naive_pulses, rng)
            ntimes.append(time.perf_counter() - t)
        ref = naive_pulses / statistics.median(ntimes) / 1e6
        print(f"{distance:>7.0f}km {det:>11,} {ours:>14,.0f} {GOAL_PULSES_PER_S / 1e6:>6.0f} "
              f"{ref:>15,.1f} {ours / ref:>6.0f}x")


if __name__ == "__main__":
    main()
