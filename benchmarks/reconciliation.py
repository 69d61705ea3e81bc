"""Reconciliation benchmark: throughput (Mb/s of sifted key) and efficiency f, with peers.

    .venv/bin/python benchmarks/reconciliation.py [--quick] [--no-peers] [--repeats N]

Ours: Cascade (optimised and original) and LDPC at QBER 1, 2, 3, 5, 8 % on keys of
10^5 and 10^6 bits (and 10^7 without --quick; LDPC stops at 10^6); medians of several
runs, one process. f = leaked / (n h(Q)) with Q the realised error fraction.

LDPC codes are built once per (length, checks) and cached, as in a long run at a steady
QBER; the benchmark builds the code a key needs before timing it and prints the median
build time on the row ("build ms"), so the cold cost of a new QBER is one build plus one
key. ``--ldpc-profile`` prints, per QBER, where an LDPC key's time goes: build, decoder
calls (rounds), iterations per frame, edges per frame, ns per edge-iteration, the rest.

Peers, run on the same QBER, printed beside ours with the ratio:
* SeQUeNCe (PyPI ``sequence``, its own venv at .peers/sequence-venv): its BB84 + Cascade
  stack, two QKDNodes paired as in its tests/qkd/test_cascade.py. It reconciles fixed
  10240-bit frames; we time only its Cascade methods (BB84 simulation excluded) and count
  its parity bits ourselves on its classical channel (every block checksum of Alice's
  CHECKSUMS message plus every binary-search checksum she returns). Its QBER comes from
  the channel's polarization fidelity (error ~ (1 - F)/2) and is measured on the keys.
* cascade-python (Bruno Rijsman, github.com/brunorijsman/cascade-python; not on PyPI),
  used when a copy of its ``cascade`` package is at .peers/cascade-python: algorithms
  "original" and "option8" (Martinez-Mateo et al.'s opt. 8) on the same key size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from qkdnet.errors import ProtocolAbort
from qkdnet.postprocessing import ldpc as ldpc_module
from qkdnet.postprocessing.cascade import reconcile_cascade
from qkdnet.postprocessing.ldpc import ldpc_plan, reconcile_ldpc
from qkdnet.postprocessing.reconciliation import binary_entropy

ROOT = Path(__file__).resolve().parents[1]
SEQUENCE_PY = ROOT / ".peers" / "sequence-venv" / "bin" / "python"
CASCADE_PYTHON = ROOT / ".peers" / "cascade-python"
QBERS = (0.01, 0.02, 0.03, 0.05, 0.08)

_SEQUENCE_SCRIPT = r"""
import json, sys, time
from sequence.components.optical_channel import QuantumChannel, ClassicalChannel
from sequence.kernel.event import Event
from sequence.kernel.process import Process
from sequence.kernel.timeline import Timeline
from sequence.protocol import StackProtocol
from sequence.qkd.BB84 import pair_bb84_protocols
from sequence.qkd import cascade as C
from sequence.topology.node import QKDNode

qber, frames, seed = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
FRAME = 10240
st = {"t": 0.0, "leak": 0, "binary": 0, "depth": 0}
raw = {0: [], 1: []}

def timed(fn):
    def wrap(self, *a, **k):
        st["depth"] += 1
        t = time.perf_counter()
        try:
            return fn(self, *a, **k)
        finally:
            st["depth"] -= 1
            if st["depth"] == 0:
                st["t"] += time.perf_counter() - t
    return wrap

_pop = C.Cascade.pop
def pop(self, info):
    if self.state == 1:
        raw[self.role].append(info)
    return _pop(self, info)
C.Cascade.pop = timed(pop)
C.Cascade.received_message = timed(C.Cascade.received_message)
_send = C.Cascade.send_by_cc
def send(self, msg):
    if msg.msg_type is C.CascadeMsgType.CHECKSUMS:
        st["leak"] += sum(len(p) for p in msg.checksums[1:])
    elif msg.msg_type is C.CascadeMsgType.RECEIVE_FOR_BINARY:
        st["leak"] += 1
        st["binary"] += 1
    return _send(self, msg)
C.Cascade.send_by_cc = send

class Parent(StackProtocol):
    def __init__(self, owner, keysize, keynum):
        super().__init__(owner, "")
        self.upper_protocols, self.lower_protocols = [], []
        self.keysize, self.keynum, self.keys = keysize, keynum, []
    def init(self): pass
    def pop(self, key): self.keys.append(key)
    def push(self): self.lower_protocols[0].push(self.keysize, self.keynum)
    def received_message(self): pass

tl = Timeline(1e15)
alice, bob = QKDNode("alice", tl), QKDNode("bob", tl)
alice.set_seed(seed); bob.set_seed(seed)
pair_bb84_protocols(alice.protocol_stack[0], bob.protocol_stack[0])
C.pair_cascade_protocols(alice.protocol_stack[1], bob.protocol_stack[1])
for name, s, d in (("qc0", alice, bob), ("qc1", bob, alice)):
    QuantumChannel(name, tl, distance=1e3, attenuation=2e-5,
                   polarization_fidelity=1 - 2 * qber).set_ends(s, d.name)
for name, s, d in (("cc0", alice, bob), ("cc1", bob, alice)):
    ClassicalChannel(name, tl, distance=1e3).set_ends(s, d.name)
pa, pb = Parent(alice, 512, frames), Parent(bob, 512, frames)
for node, p in ((alice, pa), (bob, pb)):
    node.protocol_stack[1].upper_protocols.append(p)
    p.lower_protocols.append(node.protocol_stack[1])
tl.schedule(Event(0, Process(pa, "push", [])))
t0 = time.perf_counter(); tl.init(); tl.run(); wall = time.perf_counter() - t0
n = min(len(raw[0]), len(raw[1]))
errors = sum(bin(x ^ y).count("1") for x, y in zip(raw[0][:n], raw[1][:n]))
print(json.dumps({"bits": FRAME * n, "errors": errors, "leak": st["leak"],
                  "binary": st["binary"],
                  "cascade_s": st["t"], "wall_s": wall,
                  "keys_agree": all(x == y for x, y in zip(pa.keys, pb.keys))}))
"""


def _keys(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    e = rng.random(n) < qber
    return a, a ^ e.astype(np.uint8), float(e.mean())


def _measure(
    fn, n: int, qber: float, repeats: int, prepare=None, setup: list | None = None
) -> tuple[float, float, float, int]:
    """Median wall seconds, median CPU seconds (all threads of this process) and median f
    over ``repeats`` keys, and the count of failed frames. The CPU figure is what a quiet
    machine would show as wall time for one core; this 2-core box is shared.
    ``prepare(n, q)``, when given, runs untimed before each key (its seconds go to
    ``setup``): the LDPC code build."""
    times, cpus, effs, failed = [], [], [], 0
    for r in range(repeats):
        a, b, q = _keys(n, qber, 1000 + r)
        if prepare is not None:
            t0 = time.perf_counter()
            prepare(n, q)
            if setup is not None:
                setup.append(time.perf_counter() - t0)
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            res = fn(a, b, q, np.random.default_rng(r))
        except ProtocolAbort:
            failed += 1
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            continue
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        effs.append(res.efficiency)
        if not np.array_equal(res.corrected_bits, a):
            failed += 1
    f = statistics.median(effs) if effs else float("nan")
    return statistics.median(times), statistics.median(cpus), f, failed


def _sequence_peer(qber: float, frames: int) -> dict | None:
    if not SEQUENCE_PY.exists():
        return None
    out = subprocess.run(
        [str(SEQUENCE_PY), "-c", _SEQUENCE_SCRIPT, str(qber), str(frames), "0"],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if out.returncode != 0:
        print(f"  SeQUeNCe failed: {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cascade_python_peer(n: int, qber: float, algorithm: str) -> tuple[float, float] | None:
    if not (CASCADE_PYTHON / "cascade").is_dir():
        return None
    sys.path.insert(0, str(CASCADE_PYTHON))
    try:
        from cascade.key import Key
        from cascade.mock_classical_channel import MockClassicalChannel
        from cascade.reconciliation import Reconciliation
        from cascade.shuffle import Shuffle
    finally:
        sys.path.pop(0)
    Key.set_random_seed(1)
    Shuffle.set_random_seed(2)
    correct = Key.create_random_key(n)
    noisy = correct.copy(qber, Key.ERROR_METHOD_EXACT)
    rec = Reconciliation(algorithm, MockClassicalChannel(correct), noisy, qber)
    rec.reconcile()
    leak = rec.stats.reply_parity_bits
    return rec.stats.elapsed_real_time, leak / (n * binary_entropy(qber))


def _ldpc_profile(n: int, repeats: int) -> None:
    """Where an LDPC key's time goes, per QBER (medians over ``repeats`` keys of n bits).

    The decoder is wrapped to count calls (one per frame and blind round), iterations and
    the edges of each frame's reduced graph; "rest" is the CPU time of the key outside the
    decoder calls (positions, syndromes, reduced graphs, transcript), from the wall time
    of the key minus the decoder time divided over the threads that ran it.
    """
    calls: list[tuple[int, int, float]] = []
    inner = ldpc_module.decode_layered

    def counting(*args):
        t0 = time.thread_time()
        ok, its = inner(*args)
        calls.append((its, args[1].shape[0], time.thread_time() - t0))
        return ok, its

    print(f"LDPC profile, keys of {n} bits (medians of {repeats}; shared machine)")
    print(
        f"{'QBER':>6}{'build ms':>10}{'frames':>8}{'calls':>7}{'it/frame':>10}"
        f"{'edges/frame':>13}{'ns/edge-it':>12}{'decode ms':>11}{'rest ms':>9}{'f':>8}"
        f"{'Mb/s cpu':>10}"
    )
    ldpc_module.decode_layered = counting
    try:
        for qber in QBERS:
            rows = []
            for r in range(repeats):
                a, b, q = _keys(n, qber, 1000 + r)
                ldpc_module.ldpc_code.cache_clear()
                t0 = time.perf_counter()
                plan = ldpc_plan(n, q)
                build = time.perf_counter() - t0
                calls.clear()
                c0 = time.process_time()
                try:
                    res = reconcile_ldpc(a, b, q, np.random.default_rng(r))
                    f = res.efficiency
                except ProtocolAbort:
                    f = float("nan")
                cpu = time.process_time() - c0
                frames = len(plan.frame_key_bits)
                its = sum(c[0] for c in calls)
                dec = sum(c[2] for c in calls)
                edges = statistics.mean(c[1] for c in calls)
                rows.append((
                    build * 1e3, frames, len(calls), its / frames, edges,
                    dec / max(1, sum(c[0] * c[1] for c in calls)) * 1e9, dec * 1e3,
                    max(0.0, cpu - dec) * 1e3, f, n / cpu / 1e6,
                ))
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            print(
                f"{qber:>6.2f}{med[0]:>10.0f}{med[1]:>8.0f}{med[2]:>7.0f}{med[3]:>10.1f}"
                f"{med[4]:>13.0f}{med[5]:>12.2f}{med[6]:>11.1f}{med[7]:>9.1f}{med[8]:>8.4f}"
                f"{med[9]:>10.2f}"
            )
    finally:
        ldpc_module.decode_layered = inner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes, repeats and peer runs")
    ap.add_argument("--no-peers", action="store_true", help="skip SeQUeNCe and cascade-python")
    ap.add_argument("--repeats", type=int, default=0, help="runs per point (median)")
    ap.add_argument(
        "--ldpc-profile", action="store_true", help="only the LDPC per-key time breakdown"
    )
    args = ap.parse_args()
    sizes = [10**5, 10**6] if args.quick else [10**5, 10**6, 10**7]
    repeats = args.repeats or (3 if args.quick else 5)

    # JIT warm-up (compilation is cached on disk, but loading it still takes a moment)
    a, b, q = _keys(4096, 0.03, 0)
    reconcile_cascade(a, b, q, np.random.default_rng(0))
    reconcile_cascade(a, b, q, np.random.default_rng(0), "original")
    reconcile_ldpc(a, b, q, np.random.default_rng(0))

    if args.ldpc_profile:
        _ldpc_profile(10**5 if args.quick else 10**6, repeats)
        return

    print("Cascade / LDPC throughput (Mb/s of sifted key) and efficiency f = leak/(n h(Q))")
    print("(Mb/s wall, and Mb/s per CPU-second of this process: the machine is shared)")
    print(
        f"{'method':<18}{'n':>10}{'QBER':>7}{'Mb/s':>9}{'Mb/s cpu':>10}{'f':>8}{'failed':>8}"
        f"{'build ms':>10}"
    )
    ours_1e5: dict[float, float] = {}
    methods = [
        ("cascade-optimised", lambda a, b, q, r: reconcile_cascade(a, b, q, r, "optimised")),
        ("cascade-original", lambda a, b, q, r: reconcile_cascade(a, b, q, r, "original")),
        ("ldpc", reconcile_ldpc),
    ]
    for name, fn in methods:
        for n in sizes:
            if name == "ldpc" and n > 10**6:
                continue  # LDPC runs at ~1-2 Mb/s per CPU-s: keep the benchmark bounded
            reps = max(1, repeats if n < 10**7 else 2)
            if name == "ldpc":
                reps = min(reps, 3)
            for qber in QBERS:
                builds: list[float] = []
                prepare = (lambda n, q: ldpc_plan(n, q)) if name == "ldpc" else None
                t, cpu, f, failed = _measure(fn, n, qber, reps, prepare, builds)
                mbps, mbps_cpu = n / t / 1e6, n / max(cpu, 1e-9) / 1e6
                if name == "cascade-optimised" and n == 10**5:
                    ours_1e5[qber] = mbps
                build = f"{1e3 * statistics.median(builds):>10.0f}" if builds else ""
                print(
                    f"{name:<18}{n:>10}{qber:>7.2f}{mbps:>9.2f}{mbps_cpu:>10.2f}{f:>8.4f}"
                    f"{failed:>5}/{reps}{build}"
                )

    if args.no_peers:
        return
    print()
    print("Peers (same QBER); ratio = our optimised Cascade's Mb/s at n = 1e5 / peer's")
    frames = 2 if args.quick else 10
    for qber in (0.02,) if args.quick else QBERS:
        res = _sequence_peer(qber, frames)
        if res is None:
            print("  SeQUeNCe: not available (create .peers/sequence-venv, see the docstring)")
            break
        q = res["errors"] / max(res["bits"], 1)
        mbps = res["bits"] / max(res["cascade_s"], 1e-12) / 1e6
        ideal = res["bits"] * binary_entropy(q) if q > 0 else float("nan")
        f = res["leak"] / ideal
        # SeQUeNCe asks for the parities of both halves at every search step; the right
        # one follows from the parent's, so half of those replies carry no new information
        f_indep = (res["leak"] - res["binary"] / 2) / ideal
        ratio = ours_1e5.get(qber, float("nan")) / mbps
        print(
            f"  SeQUeNCe BB84+Cascade  bits={res['bits']:>7}  Q={q:.4f}  Mb/s={mbps:.4f}  "
            f"f={f:.3f} (independent bits only: {f_indep:.3f})  "
            f"(BB84+Cascade wall {res['wall_s']:.0f} s)  ratio={ratio:,.0f}x"
        )
    n_peer = 10**4 if args.quick else 10**5
    for algorithm, ours in (("original", "original"), ("option8", "optimised")):
        for qber in (0.02,) if args.quick else QBERS:
            got = _cascade_python_peer(n_peer, qber, algorithm)
            if got is None:
                print("  cascade-python: not available (put its cascade/ in .peers/cascade-python)")
                break
            t_peer, f_peer = got
            t_ours, _cpu, f_ours, _ = _measure(
                lambda a, b, q, r, v=ours: reconcile_cascade(a, b, q, r, v), n_peer, qber, 3
            )
            print(
                f"  cascade-python {algorithm:<9} n={n_peer} Q={qber:.2f}  "
                f"Mb/s={n_peer / t_peer / 1e6:.4f} f={f_peer:.3f} | ours ({ours}) "
                f"Mb/s={n_peer / t_ours / 1e6:.2f} f={f_ours:.3f}  ratio={t_peer / t_ours:,.0f}x"
            )


if __name__ == "__main__":
    main()
