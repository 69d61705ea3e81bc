"""Asymptotic key rates: qkdnet against TNO's qkd_key_rate package (the peer), same model.

Compares, on the GYS link (Shannon-limit error correction f = 1, efficient bases q → 1,
vacuum term counted — TNO's conventions), the fully asymptotic decoy BB84 rate with μ
optimised, and the BBM92 rate (Lim et al. detector, 0.1 pairs per pulse), and times one
optimised curve in each. The peer runs in its own virtual environment:

    python3 -m venv .peers/tno-venv
    .peers/tno-venv/bin/pip install tno-quantum-communication-qkd-key-rate

Run: ``.venv/bin/python benchmarks/keyrate_peer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from qkdnet.quantum import LinkSpec, bb84, bbm92
from qkdnet.quantum.detectors import background_yield
from qkdnet.quantum.presets import preset_link

ROOT = Path(__file__).resolve().parents[1]
PEER_PYTHON = ROOT / ".peers" / "tno-venv" / "bin" / "python"

PEER_SCRIPT = r"""
import json, math, sys, time
import numpy as np
from tno.quantum.communication.qkd_key_rate.quantum import standard_detector
from tno.quantum.communication.qkd_key_rate.quantum.bb84 import BB84FullyAsymptoticKeyRateEstimate
from tno.quantum.communication.qkd_key_rate.quantum.bbm92 import BBM92AsymptoticKeyRateEstimate
cfg = json.loads(sys.argv[1])
gys = standard_detector.customise(dark_count_rate=8.5e-7,
    polarization_drift=math.asin(math.sqrt(0.033)), error_detector=0.0, efficiency_party=0.045)
bb = BB84FullyAsymptoticKeyRateEstimate(detector=gys)
mus = np.arange(0.01, 1.0, 0.01)
out = {"bb84": [], "bbm92": [], "bb84_optimize_s": []}
for L in cfg["distances"]:
    out["bb84"].append(max(bb.compute_rate(m, 0.21 * L) for m in mus))
for _ in range(cfg["repeats"]):
    t0 = time.perf_counter()
    for L in cfg["timing_distances"]:
        try:
            bb.optimize_rate(attenuation=0.21 * L)
        except ValueError:
            pass
    out["bb84_optimize_s"].append(time.perf_counter() - t0)
lim = standard_detector.customise(dark_count_rate=cfg["y0_lim"], polarization_drift=0.0,
    error_detector=0.005, efficiency_party=0.1)
pair = BBM92AsymptoticKeyRateEstimate(detector=lim)
for L in cfg["distances"]:
    out["bbm92"].append(pair.compute_rate(0.1, 0.2 * L))
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and points")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    distances = [0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 140.0, 150.0]
    timing = np.linspace(0.0, 150.0, 20 if args.quick else 100)

    gys = preset_link("gys", error_correction_efficiency=1.0)
    ours_bb84 = bb84.infinite_decoy_rate(gys, distances, optimise=True, sifting=1.0,
                                         count_vacuum=True)
    lim = LinkSpec(error_correction_efficiency=1.0, mean_pair_number=0.1,
                   misalignment_error=0.005)
    ours_bbm92 = bbm92.bbm92_rate(lim, distances, sifting=1.0)
    ours_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        bb84.infinite_decoy_rate(gys, timing, optimise=True, sifting=1.0, count_vacuum=True)
        ours_times.append(time.perf_counter() - t0)
    ours_median = statistics.median(ours_times)

    if not PEER_PYTHON.exists():
        print(f"peer not installed ({PEER_PYTHON}); ours: {len(timing)}-point optimised "
              f"curve in {ours_median * 1e3:.2f} ms (median of {repeats})")
        return
    cfg = {"distances": distances, "timing_distances": list(map(float, timing)),
           "repeats": repeats, "y0_lim": background_yield(lim.dark_count_probability)}
    res = subprocess.run([str(PEER_PYTHON), "-c", PEER_SCRIPT, json.dumps(cfg)],
                         capture_output=True, text=True, timeout=600, check=True)
    peer = json.loads(res.stdout)

    print("fully asymptotic decoy BB84, GYS, f = 1, q = 1, vacuum counted, μ optimised")
    print(f"{'km':>6} {'qkdnet':>13} {'TNO':>13} {'ratio':>8}")
    for d, a, b in zip(distances, ours_bb84, peer["bb84"], strict=True):
        ratio = a / b if b > 0 else math.nan
        print(f"{d:6.0f} {a:13.6e} {b:13.6e} {ratio:8.5f}")
    print("BBM92, source in the middle, Lim et al. detector, 0.1 pairs per pulse, f = 1, q = 1")
    for d, a, b in zip(distances, ours_bbm92, peer["bbm92"], strict=True):
        ratio = a / b if b > 0 else math.nan
        print(f"{d:6.0f} {a:13.6e} {b:13.6e} {ratio:8.5f}")
    peer_median = statistics.median(peer["bb84_optimize_s"])
    print(f"optimised BB84 curve, {len(timing)} distances, median of {repeats}: "
          f"qkdnet {ours_median * 1e3:.2f} ms, TNO {peer_median * 1e3:.1f} ms, "
          f"speed-up x{peer_median / ours_median:.0f}")


if __name__ == "__main__":
    main()
