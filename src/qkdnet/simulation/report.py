"""One self-contained HTML report of a simulation (plots embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from qkdnet.constants import SECONDS_PER_HOUR  # noqa: E402
from qkdnet.simulation.results import SimulationResult  # noqa: E402

#: Beyond this many links or applications the plots show aggregates, not every line.
_MAX_LINES = 16
_EVENT_COLOURS = {"failure": "tab:red", "repair": "tab:green", "qber": "tab:orange"}


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _hours(result: SimulationResult) -> np.ndarray:
    return result.times_s / SECONDS_PER_HOUR


def _mark_events(ax: plt.Axes, result: SimulationResult) -> None:
    for e in result.events:
        colour = _EVENT_COLOURS.get(e.kind)
        if colour is not None:
            ax.axvline(e.time_s / SECONDS_PER_HOUR, color=colour, lw=0.8, ls="--", alpha=0.7)


def topology_map(result: SimulationResult) -> str:
    """Nodes at their coordinates (or a spring layout), links coloured by key rate."""
    s = result.scenario
    g = nx.Graph()
    for node in s.nodes:
        g.add_node(node.id)
    rate: dict[tuple[str, str], float] = {}
    names: dict[tuple[str, str], list[str]] = {}
    for link, r in zip(s.links, result.link_rate_bps, strict=True):
        key = (link.a, link.b) if link.a < link.b else (link.b, link.a)
        rate[key] = rate.get(key, 0.0) + float(r)
        names.setdefault(key, []).append(link.id)
        g.add_edge(*key)
    if all(n.lat is not None and n.lon is not None for n in s.nodes):
        pos = {n.id: (float(n.lon), float(n.lat)) for n in s.nodes}  # type: ignore[arg-type]
    else:
        pos = nx.spring_layout(g, seed=s.seed)
    fig, ax = plt.subplots(figsize=(8, 6))
    values = np.array([max(rate[e if e in rate else (e[1], e[0])], 1.0) for e in g.edges])
    norm = (LogNorm(vmin=max(values.min(), 1.0), vmax=max(values.max(), 10.0))
            if len(values) else None)
    cmap = plt.get_cmap("viridis")
    for (u, v), val in zip(g.edges, values, strict=True):
        (x0, y0), (x1, y1) = pos[u], pos[v]
        ax.plot([x0, x1], [y0, y1], color=cmap(norm(val)) if norm else "grey", lw=3, zorder=1)
        key = (u, v) if (u, v) in names else (v, u)
        if g.number_of_edges() <= 40:
            ax.annotate(", ".join(names[key]), ((x0 + x1) / 2, (y0 + y1) / 2), fontsize=7,
                        ha="center", color="dimgray")
    xs = np.array([pos[n][0] for n in g.nodes])
    ys = np.array([pos[n][1] for n in g.nodes])
    trusted = np.array([s.node(n).trusted for n in g.nodes])
    ax.scatter(xs[trusted], ys[trusted], s=40 if len(xs) < 200 else 6, c="black", zorder=2,
               label="trusted node")
    if (~trusted).any():
        ax.scatter(xs[~trusted], ys[~trusted], s=40, facecolors="white", edgecolors="black",
                   zorder=2, label="untrusted node")
    if len(xs) <= 60:
        for n in g.nodes:
            ax.annotate(n, pos[n], xytext=(4, 4), textcoords="offset points", fontsize=8)
    if norm is not None:
        sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=ax, label="secret key rate, bits/s (parallel links summed)")
    ax.set_xlabel("longitude" if s.nodes[0].lon is not None else "")
    ax.set_ylabel("latitude" if s.nodes[0].lat is not None else "")
    ax.set_title("Topology, links coloured by secret key rate")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def pool_plot(result: SimulationResult) -> str:
    """Key in each link's pool over time (percentiles when there are many links)."""
    fig, ax = plt.subplots(figsize=(9, 4))
    hours = _hours(result)
    if len(result.link_ids) <= _MAX_LINES:
        for i, lid in enumerate(result.link_ids):
            ax.plot(hours, result.pool_bits[:, i], label=lid)
        ax.legend(fontsize=7, ncol=2)
    else:
        q = np.percentile(result.pool_bits, [5, 50, 95], axis=1)
        ax.fill_between(hours, q[0], q[2], alpha=0.3, label="5-95 % of links")
        ax.plot(hours, q[1], label="median link")
        ax.legend(fontsize=8)
    _mark_events(ax, result)
    ax.set_yscale("symlog", linthresh=1e3)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("time, h")
    ax.set_ylabel("key in pool, bits")
    ax.set_title("Pool levels (dashed: failures red, QBER alarms orange, repairs green)")
    return _png(fig)


def demand_plot(result: SimulationResult) -> str:
    """Keys per second served and refused, per application."""
    apps = result.app_ids
    hours = _hours(result)
    step = np.diff(np.concatenate(([0.0], result.times_s)))
    step[step == 0] = 1.0
    shown = apps if len(apps) <= 8 else ["all applications"]
    fig, axes = plt.subplots(len(shown), 1, figsize=(9, 1.9 * len(shown) + 0.6), sharex=True,
                             squeeze=False)
    for k, name in enumerate(shown):
        ax = axes[k, 0]
        cols = slice(None) if name == "all applications" else apps.index(name)
        served = np.atleast_2d(result.served[:, cols].T).sum(axis=0) / step
        no_key = np.atleast_2d(result.refused_no_key[:, cols].T).sum(axis=0) / step
        no_route = np.atleast_2d(result.refused_no_route[:, cols].T).sum(axis=0) / step
        ax.stackplot(hours, served, no_key, no_route, colors=["tab:green", "tab:red", "tab:gray"],
                     labels=["served", "refused: no key", "refused: no path"], alpha=0.8)
        _mark_events(ax, result)
        ax.set_ylabel("keys/s")
        ax.set_title(name, fontsize=9, loc="left")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("time, h")
    return _png(fig)


def _short(path: list[str], limit: int = 36) -> str:
    """A path for a plot label: in full when short, else its ends and hop count."""
    full = "-".join(path)
    return full if len(full) <= limit else f"{path[0]}…{path[-1]} ({len(path) - 1} hops)"


def paths_plot(result: SimulationResult) -> str:
    """Which relay path each application used when (a timeline, one band per path)."""
    apps = [a for a in result.app_ids if result.paths.get(a)][:_MAX_LINES]
    fig, ax = plt.subplots(figsize=(9, 0.45 * max(len(apps), 2) + 1.2))
    end_h = result.duration_s / SECONDS_PER_HOUR
    cmap = plt.get_cmap("tab10")
    for row, app in enumerate(apps):
        log = result.paths[app]
        labels: dict[str, int] = {}
        for k, (t, paths) in enumerate(log):
            t1 = log[k + 1][0] if k + 1 < len(log) else result.duration_s
            label = " | ".join(_short(p) for p in paths) or "no path"
            key = " | ".join("-".join(p) for p in paths)  # the colour follows the exact path
            colour = "lightgray" if not paths else cmap(labels.setdefault(key, len(labels)) % 10)
            ax.barh(row, (t1 - t) / SECONDS_PER_HOUR, left=t / SECONDS_PER_HOUR, color=colour,
                    edgecolor="white")
            if (t1 - t) / SECONDS_PER_HOUR > 0.12 * end_h:
                ax.text((t + t1) / 2 / SECONDS_PER_HOUR, row, label, ha="center", va="center",
                        fontsize=6)
    ax.set_yticks(range(len(apps)), apps, fontsize=8)
    ax.set_xlim(0, end_h)
    ax.set_xlabel("time, h")
    ax.set_title("Relay paths used (each colour one path)")
    return _png(fig)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt_time(t: float) -> str:
    h, rem = divmod(int(round(t)), 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


def render_html(result: SimulationResult, *, max_events: int = 500) -> str:
    """The report as one HTML string with every plot embedded."""
    s = result.scenario
    totals = result.totals()
    app_rows = []
    for aid, t in totals.items():
        frac = t["served"] / t["requested"] if t["requested"] else 1.0
        app_rows.append([aid, f"{t['requested']:,}", f"{t['served']:,}",
                         f"{t['refused_no_key']:,}", f"{t['refused_no_route']:,}", f"{frac:.1%}"])
    link_rows = [[ln.id, ln.a, ln.b, f"{ln.length_km:g}", ln.protocol, ln.system,
                  f"{r:,.0f}", f"{q:.3f}"]
                 for ln, r, q in zip(s.links[:200], result.link_rate_bps, result.link_qber,
                                     strict=False)]
    events = result.events[:max_events]
    event_rows = [[_fmt_time(e.time_s), e.kind, e.element, e.message] for e in events]
    reroutes = result.reroutes()
    path_rows = []
    for aid, log in list(result.paths.items())[:200]:
        for t_from, paths in log:
            path_rows.append([aid, _fmt_time(t_from),
                              " | ".join("-".join(p) for p in paths) or "no path"])
    imgs = {
        "topology": topology_map(result),
        "pools": pool_plot(result),
        "demand": demand_plot(result),
        "paths": paths_plot(result),
    }

    def img(name: str, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{imgs[name]}">'

    refs = "".join(f"<li>{html.escape(r)}</li>" for r in s.references)
    more = (f"<p>{len(result.events) - max_events} more events in events.csv.</p>"
            if len(result.events) > max_events else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>qkdnet simulation: {html.escape(s.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; }}
.summary {{ background: #f7f7f7; padding: 0.6em 1em; border-left: 4px solid #4a7; }}
</style></head><body>
<h1>Simulation report: {html.escape(s.name)}</h1>
<p>{html.escape(s.description)}</p>
<p class="summary">{len(s.nodes)} nodes, {len(s.links)} links, {len(s.applications)}
applications; {result.duration_s / SECONDS_PER_HOUR:g} h of network time in steps of
{s.simulation.time_step_s:g} s, computed in {result.wall_s:.2f} s.
{sum(e.kind == 'failure' for e in result.events)} failures,
{sum(e.kind == 'qber' for e in result.events)} QBER alarms, {len(reroutes)} reroutes.</p>
<h2>Topology</h2>{img("topology", "topology map coloured by key rate")}
{_table(link_rows, ["link", "a", "b", "km", "protocol", "system", "key rate b/s", "QBER"])}
<h2>Demand served and refused</h2>
{_table(app_rows, ["application", "requested", "served", "refused: no key",
                   "refused: no path", "served"])}
{img("demand", "keys served and refused per application")}
<h2>Pool levels</h2>{img("pools", "pool levels over time")}
<h2>Relay paths used</h2>{img("paths", "relay path timeline")}
{_table(path_rows, ["application", "from", "paths"])}
<h2>Events and reroutes</h2>
{_table(event_rows, ["time", "kind", "element", "what"])}{more}
<h2>References</h2><ul>{refs}</ul>
<p><small>qkdnet simulate; series in series.json and the CSV files beside this report.</small></p>
</body></html>
"""


def write_report(result: SimulationResult, out_dir: str | Path) -> Path:
    """Write ``report.html`` and every series (JSON, CSV) into ``out_dir``; return the
    report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.write(out)
    path = out / "report.html"
    path.write_text(render_html(result), encoding="utf-8")
    return path
