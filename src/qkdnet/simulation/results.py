"""What a simulation returns, and how it is written: JSON and CSV of every series."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qkdnet.control import Alarm
from qkdnet.scenario import Scenario


@dataclass(frozen=True)
class Event:
    """Something that happened at ``time_s``: a failure, a repair, a reroute, an alarm."""

    time_s: float
    kind: str
    element: str
    message: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"time_s": self.time_s, "kind": self.kind, "element": self.element,
                "message": self.message}


@dataclass
class SimulationResult:
    """Every series of a run, sampled at ``times_s`` (end of each record interval, s).

    Per link (columns in ``link_ids`` order): ``pool_bits`` (key in the pool, bits) and
    ``link_in_service``. Per application (``app_ids`` order), counts of keys in each
    interval: ``requested``, ``served``, ``refused_no_key`` (KeyExhausted) and
    ``refused_no_route`` (RoutingError). Of these, for applications holding a tenant's
    reservation, the keys within it: ``reserved_requested`` and ``reserved_served``
    (zero columns for the others).
    """

    scenario: Scenario
    duration_s: float
    times_s: np.ndarray
    link_ids: list[str]
    link_rate_bps: np.ndarray
    link_qber: np.ndarray
    pool_bits: np.ndarray
    link_in_service: np.ndarray
    app_ids: list[str]
    requested: np.ndarray
    served: np.ndarray
    refused_no_key: np.ndarray
    refused_no_route: np.ndarray
    events: list[Event] = field(default_factory=list)
    paths: dict[str, list[tuple[float, list[list[str]]]]] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    wall_s: float = 0.0
    reserved_requested: np.ndarray | None = None
    reserved_served: np.ndarray | None = None

    def totals(self) -> dict[str, dict[str, int]]:
        """Keys requested, served and refused per application over the whole run."""
        return {
            app_id: {
                "requested": int(self.requested[:, i].sum()),
                "served": int(self.served[:, i].sum()),
                "refused_no_key": int(self.refused_no_key[:, i].sum()),
                "refused_no_route": int(self.refused_no_route[:, i].sum()),
            }
            for i, app_id in enumerate(self.app_ids)
        }

    def reroutes(self) -> list[Event]:
        """The reroute events."""
        return [e for e in self.events if e.kind == "reroute"]

    def to_json(self) -> dict[str, Any]:
        """Everything as JSON-ready data (series as lists)."""
        return {
            "scenario": self.scenario.name,
            "duration_s": self.duration_s,
            "wall_s": self.wall_s,
            "times_s": self.times_s.tolist(),
            "links": {
                lid: {
                    "key_rate_bps": float(self.link_rate_bps[i]),
                    "qber": float(self.link_qber[i]),
                    "pool_bits": self.pool_bits[:, i].tolist(),
                    "in_service": self.link_in_service[:, i].astype(int).tolist(),
                }
                for i, lid in enumerate(self.link_ids)
            },
            "applications": {
                aid: {
                    "requested": self.requested[:, i].tolist(),
                    "served": self.served[:, i].tolist(),
                    "refused_no_key": self.refused_no_key[:, i].tolist(),
                    "refused_no_route": self.refused_no_route[:, i].tolist(),
                    "paths": [{"from_s": t, "paths": p} for t, p in self.paths.get(aid, [])],
                    **self._reserved_json(i),
                }
                for i, aid in enumerate(self.app_ids)
            },
            "totals": self.totals(),
            "events": [e.to_json() for e in self.events],
        }

    def _reserved_json(self, i: int) -> dict[str, list[int]]:
        if self.reserved_requested is None or self.reserved_served is None:
            return {}
        if not self.reserved_requested[:, i].any():
            return {}
        return {"reserved_requested": self.reserved_requested[:, i].tolist(),
                "reserved_served": self.reserved_served[:, i].tolist()}

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``series.json``, ``pools.csv``, ``links_in_service.csv``,
        ``applications.csv``, ``events.csv`` and ``paths.csv``; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        path = out / "series.json"
        path.write_text(json.dumps(self.to_json()), encoding="utf-8")
        written.append(path)
        for name, data in (("pools.csv", self.pool_bits),
                           ("links_in_service.csv", self.link_in_service.astype(int))):
            path = out / name
            with path.open("w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["time_s", *self.link_ids])
                for t, row in zip(self.times_s, data, strict=True):
                    w.writerow([f"{t:g}", *(f"{v:g}" for v in row)])
            written.append(path)
        path = out / "applications.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["time_s", "application", "requested", "served", "refused_no_key",
                        "refused_no_route"])
            for k, t in enumerate(self.times_s):
                for i, aid in enumerate(self.app_ids):
                    w.writerow([f"{t:g}", aid, self.requested[k, i], self.served[k, i],
                                self.refused_no_key[k, i], self.refused_no_route[k, i]])
        written.append(path)
        path = out / "events.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["time_s", "kind", "element", "message"])
            for e in self.events:
                w.writerow([f"{e.time_s:g}", e.kind, e.element, e.message])
        written.append(path)
        path = out / "paths.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["application", "from_s", "paths"])
            for aid, log in self.paths.items():
                for t, paths in log:
                    w.writerow([aid, f"{t:g}", " | ".join("-".join(p) for p in paths) or "none"])
        written.append(path)
        return written
