"""Wall time of `qkdnet simulate` against network size, and the SeQUeNCe peer.

Random geometric graphs (qkdnet.simulation.synthetic: links <= 60 km of fibre, mean degree
about 3, decoy-BB84 rates from the quantum layer), n/2 applications with diurnal demand
of 20 keys/s between nodes at most 300 km apart, random link failures (MTBF 30 days,
MTTR 4 hours), 24 h of network time at 1 s steps. Prints the median of several runs per
size, the cost per link-step (growth no worse than linear in links x time means this
stays flat), and the goal: 1,000 nodes x 24 h under 60 s.

Peer: SeQUeNCe (photon-level discrete events) on its own QKD example, two QKD nodes with
BB84 + Cascade over 10 km, run in its own venv (.peers/sequence-venv). It cannot reach
24 h of network time, so it runs a short network time and both are compared as network
seconds simulated per wall second on that same two-node network; SeQUeNCe's time for
24 h is the linear extrapolation. The two model the link at different levels (photons
vs. rates): the ratio is what a network-level answer costs, not a like-for-like kernel.

    .venv/bin/python benchmarks/simulate_scale.py            # full (about 10 minutes)
    .venv/bin/python benchmarks/simulate_scale.py --quick    # 10-1,000 nodes, 2 h, 1 run
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

from qkdnet.scenario import scenario_from_dict
from qkdnet.simulation import simulate
from qkdnet.simulation.synthetic import random_geometric_scenario

ROOT = Path(__file__).resolve().parents[1]
PEER_PY = ROOT / ".peers" / "sequence-venv" / "bin" / "python"
GOAL_S = 60.0


def run_size(n_nodes: int, duration_s: float, runs: int) -> dict[str, float]:
    scenario = random_geometric_scenario(n_nodes, np.random.default_rng(n_nodes),
                                         duration_s=duration_s)
    walls = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = simulate(scenario)
        walls.append(time.perf_counter() - t0)
    assert result is not None
    steps = duration_s / scenario.simulation.time_step_s
    wall = statistics.median(walls)
    totals = result.totals()
    # Path hops at the start: the kernel's work per step is links + hops of all paths.
    hops = sum(len(path) - 1 for log in result.paths.values() if log for path in log[0][1])
    return {
        "nodes": n_nodes, "links": len(scenario.links), "apps": len(scenario.applications),
        "wall_s": wall, "runs": runs,
        "hops_per_app": hops / max(1, len(scenario.applications)),
        "ns_per_link_step": wall / (len(scenario.links) * steps) * 1e9,
        "ns_per_work_step": wall / ((len(scenario.links) + hops) * steps) * 1e9,
        "failures": sum(e.kind == "failure" for e in result.events),
        "reroutes": len(result.reroutes()),
        "served_fraction": sum(t["served"] for t in totals.values())
        / max(1, sum(t["requested"] for t in totals.values())),
    }


def two_node(duration_s: float) -> float:
    """Our wall time for SeQUeNCe's example network: two nodes, one 10 km link."""
    data = {
        "name": "two-node", "duration_s": duration_s,
        "nodes": [{"id": "alice"}, {"id": "bob"}],
        "links": [{"id": "ab", "a": "alice", "b": "bob", "length_km": 10}],
        "saes": [{"id": "sa", "node": "alice"}, {"id": "sb", "node": "bob"}],
        "applications": [{"id": "app", "master": "sa", "slave": "sb",
                          "demand": {"rate_keys_per_s": 100}}],
    }
    scenario = scenario_from_dict(data)
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        simulate(scenario)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def peer(network_s: float) -> dict[str, float] | None:
    if not PEER_PY.exists():
        print(f"peer: SeQUeNCe venv missing at {PEER_PY} (see the ground rules to create it)")
        return None
    try:
        out = subprocess.run(
            [str(PEER_PY), str(ROOT / "benchmarks" / "_sequence_peer.py"), str(network_s), "10"],
            capture_output=True, text=True, timeout=900, check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"peer: SeQUeNCe run failed: {exc}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 h, one run")
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    duration = 2 * 3600.0 if args.quick else 86_400.0
    sizes = args.sizes or ([10, 100, 1000] if args.quick else [10, 100, 1000, 10_000])
    # Compile the Numba kernel once (cached on disk afterwards).
    simulate(random_geometric_scenario(10, np.random.default_rng(0), duration_s=60))
    print(f"qkdnet simulate, random geometric networks, {duration / 3600:g} h at 1 s steps")
    print(f"{'nodes':>7} {'links':>7} {'apps':>6} {'hops/app':>8} {'runs':>4} {'wall s':>9} "
          f"{'ns/link-step':>13} {'ns/(link+hop)-step':>19} {'failures':>8} {'reroutes':>8} "
          f"{'served':>7}")
    rows = []
    for n in sizes:
        runs = 1 if (args.quick or n >= 10_000) else 3
        row = run_size(n, duration, runs)
        rows.append(row)
        print(f"{row['nodes']:>7} {row['links']:>7} {row['apps']:>6} {row['hops_per_app']:>8.1f} "
              f"{row['runs']:>4} {row['wall_s']:>9.2f} {row['ns_per_link_step']:>13.1f} "
              f"{row['ns_per_work_step']:>19.1f} {row['failures']:>8} {row['reroutes']:>8} "
              f"{row['served_fraction']:>7.1%}", flush=True)
    big = [r for r in rows if r["nodes"] == 1000]
    if big and not args.quick:
        verdict = "met" if big[0]["wall_s"] < GOAL_S else "NOT met"
        print(f"goal: 1,000 nodes x 24 h in {big[0]['wall_s']:.1f} s < {GOAL_S:g} s: {verdict}")
    if len(rows) > 1:
        ref = rows[1 if len(rows) > 2 else 0]
        growth = rows[-1]["ns_per_link_step"] / ref["ns_per_link_step"]
        work = rows[-1]["ns_per_work_step"] / ref["ns_per_work_step"]
        print(f"cost per link-step, largest / second size: {growth:.2f}; per (link + path hop)"
              f"-step: {work:.2f} (~1 means linear in that work x time)")
    if args.no_peer:
        return
    peer_s = 0.002 if args.quick else 0.02
    ours = two_node(86_400.0)
    theirs = peer(peer_s)
    print("\npeer: SeQUeNCe 1.3 QKD example (2 nodes, BB84 + Cascade, 10 km), same network")
    print(f"  qkdnet:   24 h of network time in {ours:.3f} s "
          f"({86_400.0 / ours:,.0f} network s per wall s)")
    if theirs is not None:
        rate = theirs["network_s"] / theirs["wall_s"]
        print(f"  SeQUeNCe: {theirs['network_s']:g} s of network time in {theirs['wall_s']:.2f} s "
              f"({rate:.3g} network s per wall s; {theirs['keys']} keys); "
              f"24 h would take ~{86_400.0 / rate / 86_400.0:,.0f} days")
        print(f"  ratio (network time per wall time, qkdnet / SeQUeNCe): "
              f"{(86_400.0 / ours) / rate:.3g}")


if __name__ == "__main__":
    sys.exit(main())
