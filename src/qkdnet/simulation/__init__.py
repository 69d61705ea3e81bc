"""qkdnet.simulation — a scenario's QKD network over simulated time.

:func:`simulate` runs a :class:`qkdnet.scenario.Scenario` and returns a
:class:`SimulationResult`; :func:`write_report` writes the HTML report and the series.
docs/simulation.md explains the engine.
"""

from qkdnet.simulation.engine import demand_rate, simulate
from qkdnet.simulation.rates import link_rate_and_qber, link_rates
from qkdnet.simulation.report import render_html, write_report
from qkdnet.simulation.results import Event, SimulationResult

__all__ = [
    "Event",
    "SimulationResult",
    "demand_rate",
    "link_rate_and_qber",
    "link_rates",
    "render_html",
    "simulate",
    "write_report",
]
