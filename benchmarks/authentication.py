"""Wegman–Carter authentication: CPU time to tag and check one block's public messages.

    .venv/bin/python benchmarks/authentication.py [--quick] [--runs N]

Ours only (no peer). The frames are the ones the pipeline authenticates for one block of
about 10^6 sifted bits at QBER 2 % on a 5 km link, built as ``benchmarks/postprocessing.py``
builds them: sifting's four announcements, the Cascade transcript, the verification seed
and tag, the Toeplitz seed. Printed: the median CPU time (this thread) to send and receive
all of them through one :class:`AuthenticatedChannel` (both ends, as the pipeline does);
the hash rate on the largest message (one ``tag`` call, GB/s of message); and the cost of
one tag + check of a 24-byte message (the fixed per-message cost). Also the same block's
frames handed over as read-only memoryviews of NumPy arrays instead of bytes. The machine
is shared with other work: quote medians.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from qkdnet.postprocessing import authentication
from qkdnet.postprocessing.cascade import reconcile_cascade
from qkdnet.postprocessing.sifting import sift
from qkdnet.quantum.link import LinkSpec
from qkdnet.quantum.sampling import detection_probabilities, simulate_block


def median_cpu_s(fn: Callable[[], object], runs: int) -> float:
    """Median CPU seconds of this thread over ``runs`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(runs):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def block_frames(sifted_bits: int, qber: float, seed: int) -> list[bytes]:
    """The public messages of one block, as benchmarks/postprocessing.py's ``auth()``."""
    rng = np.random.default_rng(seed)
    link = LinkSpec(length_km=5.0, detector_efficiency=0.5, misalignment_error=qber,
                    intensities=(0.6, 0.2, 0.0), intensity_probabilities=(0.5, 0.3, 0.2))
    per_pulse = float(detection_probabilities(link)[:, 0, 0, :].sum())
    sifted = sift(simulate_block(link, int(sifted_bits / per_pulse), rng))
    m = sifted.sifted_bits
    rec = reconcile_cascade(sifted.alice_key, sifted.bob_key, qber, rng)
    ell = m // 4  # about the pipeline's compression at 2 %
    return [msg for _, msg in sifted.messages] + [
        rec.transcript, bytes(24), bytes(-(-(m + ell - 1) // 8))
    ]


def load_module(path: str) -> Any:
    """The module at ``path`` (another copy of authentication.py, e.g. an older commit's
    from ``git show REV:src/qkdnet/postprocessing/authentication.py > FILE``)."""
    spec = importlib.util.spec_from_file_location("authentication_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10^5 sifted bits, 9 runs")
    parser.add_argument("--runs", type=int, default=0, help="runs per median (default 15)")
    parser.add_argument("--module", help="time this copy of authentication.py instead "
                        "(A/B against an older commit's)")
    args = parser.parse_args()
    mod = load_module(args.module) if args.module else authentication
    channel_cls, pool_cls, role = mod.AuthenticatedChannel, mod.PreSharedKeyPool, mod.Role
    runs = args.runs or (9 if args.quick else 15)
    n = 10**5 if args.quick else 10**6
    frames = block_frames(n, 0.02, 2024)
    key = np.random.default_rng(1).integers(0, 2, 1 << 16, dtype=np.uint8)
    senders = [role.BOB if i in (0, 3) else role.ALICE for i in range(len(frames))]

    def fresh(msgs: list[Any]) -> Callable[[], object]:
        # as benchmarks/postprocessing.py's auth(): a new channel for the block
        def run() -> None:
            channel = channel_cls(pool_cls(key), pool_cls(key))
            for sender, msg in zip(senders, msgs, strict=True):
                channel.receive(channel.send(sender, msg))
        return run

    def steady(msgs: list[Any]) -> Callable[[], object]:
        # as the pipeline: one channel for all blocks; each block's frames, then the key
        # they consumed repaid (refill)
        channel = channel_cls(pool_cls(key), pool_cls(key))
        repay = np.random.default_rng(4)

        def run() -> None:
            before = channel.key_consumed_bits
            for sender, msg in zip(senders, msgs, strict=True):
                channel.receive(channel.send(sender, msg))
            bits = repay.integers(0, 2, channel.key_consumed_bits - before, dtype=np.uint8)
            channel.refill(bits, bits.copy())
        return run

    total = sum(len(f) for f in frames)
    print(f"block of ~{n:,} sifted bits: {len(frames)} frames, {total / 1e6:.2f} MB "
          f"(largest {max(len(f) for f in frames) / 1e6:.2f} MB), each hashed at both ends; "
          f"median of {runs} runs, CPU time of this thread, shared machine"
          + (f"; module {args.module}" if args.module else ""))
    t = median_cpu_s(fresh(frames), runs)
    print(f"new channel + tag/check all frames:          {1e3 * t:8.3f} ms CPU")
    t = median_cpu_s(steady(frames), runs)
    print(f"steady state: tag/check all frames + refill: {1e3 * t:8.3f} ms CPU "
          f"({2 * total / t / 1e9:.1f} GB/s hashed)")
    try:
        views = [np.frombuffer(f, dtype=np.uint8).data for f in frames]
        t = median_cpu_s(steady(views), runs)
        print(f"the same, frames as read-only memoryviews:   {1e3 * t:8.3f} ms CPU")
    except Exception as exc:  # noqa: BLE001 - older versions took bytes only
        print(f"the same, frames as read-only memoryviews:   not accepted ({exc!r})")
    big = max(frames, key=len)
    pool = pool_cls(np.random.default_rng(2).integers(0, 2, 1 << 20, dtype=np.uint8))
    auth1 = mod.WegmanCarterAuthenticator(pool)
    t = median_cpu_s(lambda: auth1.tag(big), runs)
    print(f"one tag of the largest message:              {1e3 * t:8.3f} ms CPU "
          f"({len(big) / t / 1e9:.1f} GB/s)")
    many = 400
    big_key = np.random.default_rng(3).integers(0, 2, 64 * (2 * many + 8), dtype=np.uint8)

    def small() -> None:
        channel = channel_cls(pool_cls(big_key), pool_cls(big_key))
        msg = bytes(24)
        for _ in range(many):
            channel.receive(channel.send(role.ALICE, msg))

    t = median_cpu_s(small, runs)
    print(f"tag + check of a 24-byte message:            {1e6 * t / many:8.2f} us CPU "
          f"(mean of {many} in one channel)")


if __name__ == "__main__":
    main()
