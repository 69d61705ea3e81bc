"""Synthetic networks for scale tests and sweeps: random geometric graphs of QKD links.

Nodes are scattered uniformly on a square sized so that a node has on average
``mean_degree`` neighbours within ``max_link_km``; every such pair is a fibre link, plus
the edges of a Euclidean minimum spanning tree (of the 8 nearest neighbours) so the graph
is connected. Fibre runs longer than the straight line: length = ``route_factor`` times
the distance (1.3 is typical of metro and regional fibre).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial import cKDTree

from qkdnet.errors import ParameterError
from qkdnet.scenario import Scenario, scenario_from_dict


def random_geometric_scenario(
    n_nodes: int,
    rng: np.random.Generator,
    *,
    mean_degree: float = 3.0,
    max_link_km: float = 60.0,
    route_factor: float = 1.3,
    n_applications: int | None = None,
    keys_per_s: float = 20.0,
    max_app_km: float = 300.0,
    duration_s: float = 86_400.0,
    link_mtbf_s: float | None = 30 * 86_400.0,
    link_mttr_s: float = 4 * 3600.0,
    record_every_s: float = 300.0,
) -> Scenario:
    """A scenario of ``n_nodes`` trusted nodes with decoy-BB84 fibre links (km), a
    diurnal demand of ``keys_per_s`` 256-bit keys per application between random node
    pairs at most ``max_app_km`` apart (default n_nodes // 2 applications) and random
    link failures (MTBF/MTTR, s)."""
    if n_nodes < 2:
        raise ParameterError("n_nodes", f"must be >= 2, got {n_nodes}")
    side_km = math.sqrt(n_nodes * math.pi * (max_link_km / route_factor) ** 2 / mean_degree)
    xy = rng.uniform(0.0, side_km, size=(n_nodes, 2))
    tree = cKDTree(xy)
    pairs = set(map(tuple, tree.query_pairs(max_link_km / route_factor, output_type="ndarray")))
    k = min(8, n_nodes - 1)
    dist, idx = tree.query(xy, k=k + 1)
    rows = np.repeat(np.arange(n_nodes), k)
    knn = coo_matrix((dist[:, 1:].ravel() + 1e-9, (rows, idx[:, 1:].ravel())),
                     shape=(n_nodes, n_nodes))
    mst = minimum_spanning_tree(knn).tocoo()
    for i, j in zip(mst.row, mst.col, strict=True):
        pairs.add((min(i, j), max(i, j)))
    nodes = [{"id": f"n{i}"} for i in range(n_nodes)]
    links: list[dict[str, Any]] = []
    for i, j in sorted(pairs):
        d = float(np.hypot(*(xy[i] - xy[j])))
        links.append({"id": f"l{i}-{j}", "a": f"n{i}", "b": f"n{j}",
                      "length_km": round(max(2.0, route_factor * d), 2)})
    n_apps = n_nodes // 2 if n_applications is None else n_applications
    # Regional demand: each application joins a random node to a random other node
    # within ``max_app_km`` (straight line), so path lengths do not grow with the network.
    ends = np.empty((n_apps, 2), dtype=np.int64)
    ends[:, 0] = rng.choice(n_nodes, size=n_apps)
    for a in range(n_apps):
        near = [j for j in tree.query_ball_point(xy[ends[a, 0]], max_app_km / route_factor)
                if j != ends[a, 0]]
        if not near:
            near = [int(idx[ends[a, 0], 1])]
        ends[a, 1] = near[int(rng.integers(len(near)))]
    saes = [{"id": f"s{i}", "node": f"n{i}"} for i in range(n_nodes)]
    peak = rng.uniform(8, 20, size=n_apps)
    apps = [
        {"id": f"app{a}", "master": f"s{ends[a, 0]}", "slave": f"s{ends[a, 1]}",
         "demand": {"kind": "diurnal", "rate_keys_per_s": keys_per_s, "amplitude": 0.7,
                    "peak_hour": round(float(peak[a]), 2)}}
        for a in range(n_apps)
    ]
    failures = []
    if link_mtbf_s is not None:
        failures.append({"element": "*", "kind": "link", "mtbf_s": link_mtbf_s,
                         "mttr_s": link_mttr_s})
    data = {
        "name": f"random-geometric-{n_nodes}",
        "description": f"{n_nodes} nodes, {len(links)} links, {n_apps} applications",
        "duration_s": duration_s,
        "seed": int(rng.integers(1 << 31)),
        "nodes": nodes, "links": links, "saes": saes, "applications": apps,
        "failures": failures,
        "simulation": {"record_every_s": record_every_s},
    }
    return scenario_from_dict(data, source=f"<random-geometric-{n_nodes}>")
