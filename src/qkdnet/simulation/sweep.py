"""Parameter sweeps: many simulations of one scenario with some fields varied.

A variation is ``PATH=VALUES``. PATH walks the scenario's fields with dots; in a list,
``*`` means every item, an item's ``id`` picks that item, a number picks by position:
``links.*.length_km``, ``links.NEC.loss_db_per_km``, ``applications.0.demand.rate_keys_per_s``.
VALUES is ``start:stop:step`` (stop included when the steps reach it) or a comma list
``a,b,c``. Several variations make a grid (their Cartesian product).

Points run in parallel on a local process pool (default) or on a Dask distributed cluster
(``scheduler`` = its address, e.g. ``tcp://10.0.0.5:8786``). Each point returns one row of
metrics: keys requested, served and refused, the served fraction, reroutes.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import itertools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qkdnet.errors import ParameterError, ScenarioError
from qkdnet.scenario import Scenario, scenario_from_dict


@dataclass(frozen=True)
class Variation:
    """One field path and the values it takes."""

    path: str
    values: tuple[Any, ...]


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # e.g. a routing metric name
    integral = value.is_integer() and "." not in text and "e" not in text.lower()
    return int(value) if integral else value


def parse_variation(spec: str) -> Variation:
    """``PATH=start:stop:step`` or ``PATH=a,b,c`` → Variation. Raises ParameterError."""
    if "=" not in spec:
        raise ParameterError("--vary", f"expected PATH=VALUES, got {spec!r}")
    path, _, values = spec.partition("=")
    path, values = path.strip(), values.strip()
    if not path or not values:
        raise ParameterError("--vary", f"expected PATH=VALUES, got {spec!r}")
    if ":" in values:
        parts = values.split(":")
        if len(parts) != 3:
            raise ParameterError("--vary", f"a range is start:stop:step, got {values!r}")
        try:
            start, stop, step = (float(p) for p in parts)
        except ValueError:
            raise ParameterError("--vary", f"a range needs numbers, got {values!r}") from None
        if step <= 0 or stop < start:
            raise ParameterError("--vary", f"need step > 0 and stop >= start, got {values!r}")
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        grid = start + step * np.arange(n)
        as_int = all(float(p).is_integer() for p in parts)
        vals: tuple[Any, ...] = tuple(int(round(v)) if as_int else float(v) for v in grid)
    else:
        vals = tuple(_number(v.strip()) for v in values.split(",") if v.strip())
    if not vals:
        raise ParameterError("--vary", f"no values in {spec!r}")
    return Variation(path, vals)


def _apply(data: Any, parts: Sequence[str], value: Any, full: str) -> int:
    """Set ``value`` at the path in nested dicts/lists; return how many places were set."""
    if not parts:
        raise ParameterError("--vary", f"empty path in {full!r}")
    head, rest = parts[0], parts[1:]
    if isinstance(data, list):
        if head == "*":
            targets = list(range(len(data)))
        elif head.isdigit() and int(head) < len(data):
            targets = [int(head)]
        else:
            targets = [i for i, item in enumerate(data)
                       if isinstance(item, dict) and item.get("id") == head]
        if not targets:
            raise ParameterError("--vary", f"{full!r}: nothing matches {head!r}")
        if not rest:
            for i in targets:
                data[i] = value
            return len(targets)
        return sum(_apply(data[i], rest, value, full) for i in targets)
    if isinstance(data, dict):
        if not rest:
            data[head] = value
            return 1
        if head not in data or data[head] is None:
            data[head] = {}
        return _apply(data[head], rest, value, full)
    raise ParameterError("--vary", f"{full!r}: cannot descend into {head!r}")


def grid_points(variations: Sequence[Variation]) -> list[dict[str, Any]]:
    """Every combination of the variations' values, as {path: value}."""
    return [dict(zip([v.path for v in variations], combo, strict=True))
            for combo in itertools.product(*(v.values for v in variations))]


def scenario_at(base: dict[str, Any], point: dict[str, Any]) -> Scenario:
    """The scenario with the point's values set (validated; ScenarioError names the path)."""
    data = copy.deepcopy(base)
    for path, value in point.items():
        _apply(data, path.split("."), value, path)
    try:
        return scenario_from_dict(data, source=f"sweep point {point}")
    except ScenarioError as exc:
        raise ScenarioError(str(exc)) from None


def run_point(
    base: dict[str, Any], point: dict[str, Any], duration_s: float | None
) -> dict[str, Any]:
    """Simulate one point of the sweep; a row of metrics (keys, fractions, reroutes)."""
    from qkdnet.simulation.engine import simulate

    scenario = scenario_at(base, point)
    result = simulate(scenario, duration_s=duration_s)
    totals = result.totals()
    requested = sum(t["requested"] for t in totals.values())
    served = sum(t["served"] for t in totals.values())
    row: dict[str, Any] = dict(point)
    row.update({
        "requested": requested,
        "served": served,
        "refused_no_key": sum(t["refused_no_key"] for t in totals.values()),
        "refused_no_route": sum(t["refused_no_route"] for t in totals.values()),
        "served_fraction": served / requested if requested else 1.0,
        "reroutes": len(result.reroutes()),
        "mean_link_rate_bps": float(np.mean(result.link_rate_bps)) if len(result.link_ids) else 0.0,
        "wall_s": result.wall_s,
    })
    for app_id, t in totals.items():
        row[f"served_fraction[{app_id}]"] = t["served"] / t["requested"] if t["requested"] else 1.0
    return row


def run_sweep(
    scenario: Scenario,
    variations: Sequence[Variation],
    *,
    duration_s: float | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every grid point; rows in grid order.

    ``scheduler``: a Dask distributed scheduler address (needs ``qkdnet[dask]``); else a
    local process pool of ``workers`` processes (default: the CPU count).
    ``progress(done, total)`` is called as points finish.
    """
    base = json.loads(scenario.model_dump_json())
    points = grid_points(variations)
    for point in points:  # fail fast on a bad path or value, before starting workers
        scenario_at(base, point)
    rows: list[dict[str, Any] | None] = [None] * len(points)
    done = 0
    if scheduler is not None:
        try:
            from distributed import Client, as_completed
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise ParameterError("--scheduler", "needs Dask: pip install 'qkdnet[dask]'") from exc
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ParameterError("--scheduler", f"cannot reach {scheduler}: {exc}") from exc
        with client:
            futures = client.map(run_point, [base] * len(points), points,
                                 [duration_s] * len(points), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for future in as_completed(futures):
                rows[index[future.key]] = future.result()
                done += 1
                if progress is not None:
                    progress(done, len(points))
    else:
        n = workers or os.cpu_count() or 1
        with cf.ProcessPoolExecutor(max_workers=n) as pool:
            futs = {pool.submit(run_point, base, p, duration_s): i for i, p in enumerate(points)}
            for fut in cf.as_completed(futs):
                rows[futs[fut]] = fut.result()
                done += 1
                if progress is not None:
                    progress(done, len(points))
    return [r for r in rows if r is not None]
