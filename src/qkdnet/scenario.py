"""Scenarios: a QKD network and what happens to it, as a YAML file validated by pydantic.

``load_scenario(path)`` reads a YAML file and returns a :class:`Scenario`. Every model
forbids unknown keys (``extra="forbid"``), so a misspelt field is an error, not a silent
default. Errors become one :class:`qkdnet.errors.ScenarioError` whose message names the
file, the line and the field, e.g.::

    scenarios/x.yaml:14: links[2].length_km: Input should be greater than or equal to 0

Durations and times accept seconds (a number) or a string with a unit: ``"90s"``,
``"30m"``, ``"2h"``, ``"1d"``. The format is documented with examples in docs/scenarios.md.

Names follow ETSI GS QKD 015 where it has one: a node is a QKD node (``qkdn_id`` = ``id``),
a link a QKD link (``qkdl_id`` = ``id``); SAEs are the applications' secure application
entities of ETSI GS QKD 014.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from qkdnet.constants import SECONDS_PER_DAY, SECONDS_PER_HOUR
from qkdnet.errors import ParameterError, ScenarioError
from qkdnet.quantum.link import LinkSpec

__all__ = [
    "ApplicationSpec",
    "DemandProfile",
    "FailureSpec",
    "LinkSpecModel",
    "NodeSpec",
    "Reservation",
    "SaeSpec",
    "Scenario",
    "SimulationSettings",
    "TenantSpec",
    "dump_scenario",
    "load_scenario",
    "parse_duration_s",
    "scenario_from_dict",
]

_UNIT_SECONDS = {
    "s": 1.0,
    "sec": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": SECONDS_PER_HOUR,
    "d": SECONDS_PER_DAY,
}
_DURATION_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")


def parse_duration_s(value: object, field: str = "duration") -> float:
    """A duration in seconds from a number (seconds) or a string ``"90s"``, ``"30m"``,
    ``"2h"``, ``"1d"``, ``"1.5h"``. Raises ParameterError naming ``field`` otherwise."""
    if isinstance(value, bool):
        raise ParameterError(field, f"expected seconds or a string like '2h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        if match is None or match.group(2) not in {"", *_UNIT_SECONDS}:
            raise ParameterError(
                field, f"expected seconds or a number with unit s, m, h or d, got {value!r}"
            )
        seconds = float(match.group(1)) * _UNIT_SECONDS.get(match.group(2) or "s", 1.0)
    else:
        raise ParameterError(field, f"expected seconds or a string like '2h', got {value!r}")
    if not seconds >= 0.0:
        raise ParameterError(field, f"must be >= 0 s, got {value!r}")
    return seconds


def _duration(value: object) -> object:
    if value is None:
        return None
    try:
        return parse_duration_s(value)
    except ParameterError as exc:
        # pydantic turns a ValueError into a field error at the right location.
        raise ValueError(str(exc).removeprefix("duration: ")) from exc


Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0.0)]
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:\-]+$")]


_NO_FORMULA = ("sarg04", "dps", "cow")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Model):
    """A QKD node (ETSI 015 ``qkdn_id``): a site with a key manager."""

    id: Identifier
    #: A trusted node may relay keys (it sees them in the clear).
    trusted: bool = True
    #: Policies may require a minimum security level of every relay node.
    security_level: int = Field(default=1, ge=0)
    #: Where `qkdnet serve` runs this node's key manager.
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)
    #: Free text for reports, e.g. "NICT Koganei".
    label: str = ""
    #: Grouping for reports, e.g. "backbone" or "metro-tokyo".
    group: str = ""


class LinkSpecModel(_Model):
    """A QKD link (ETSI 015 ``qkdl_id``, ``qkdl_type`` direct) between nodes ``a`` and ``b``.

    The physical fields are those of :class:`qkdnet.quantum.link.LinkSpec` with its
    defaults; ``to_link_spec()`` builds one. ``key_rate_bps`` overrides the computed secret
    key rate with a measured one (bits per second).
    """

    id: Identifier
    a: Identifier
    b: Identifier
    length_km: float = Field(ge=0.0)
    loss_db_per_km: float = Field(default=0.2, ge=0.0)
    #: A protocol of ``qkdnet.quantum.PROTOCOLS`` (its rate is computed), or one the
    #: quantum layer has no formula for (``sarg04``, ``dps``, ``cow``: give ``key_rate_bps``).
    protocol: Literal[
        "bb84-decoy", "bb84-one-decoy", "bb84-no-decoy", "bb84-efficient", "bbm92",
        "cv-qkd", "twin-field", "sarg04", "dps", "cow",
    ] = "bb84-decoy"
    #: Let the quantum layer choose the source's free intensities for the best rate.
    optimise: bool = False
    #: Any other LinkSpec field by name (e.g. mean_pair_number for bbm92).
    physics: dict[str, float] = Field(default_factory=dict)
    #: The QKD system on the link, e.g. "NEC" or "Toshiba" (reports only).
    system: str = ""
    extra_loss_db: float = Field(default=0.0, ge=0.0)
    detector_efficiency: float = Field(default=0.10, ge=0.0, le=1.0)
    dark_count_probability: float = Field(default=6e-7, ge=0.0, le=1.0)
    afterpulse_probability: float = Field(default=0.0, ge=0.0, le=1.0)
    dead_time_s: float = Field(default=0.0, ge=0.0)
    misalignment_error: float = Field(default=0.005, ge=0.0, le=0.5)
    repetition_rate_hz: float = Field(default=1e9, gt=0.0)
    intensities: tuple[float, ...] = (0.5, 0.1, 2e-4)
    intensity_probabilities: tuple[float, ...] = (0.8, 0.1, 0.1)
    basis_probability_z: float = Field(default=0.5, ge=0.0, le=1.0)
    error_correction_efficiency: float = Field(default=1.16, ge=1.0)
    #: A measured secret key rate, bits/s; when set it replaces the computed one.
    key_rate_bps: float | None = Field(default=None, ge=0.0)
    #: The link's QBER in normal operation (0..0.5); when unset it is computed.
    qber: float | None = Field(default=None, ge=0.0, le=0.5)
    #: "rate": key at the quantum layer's asymptotic rate (fast); "pipeline": the rate
    #: measured by running the event-level simulation and the whole post-processing
    #: pipeline (finite key, Cascade, Toeplitz) on ``pipeline_pulses`` pulses (slow, exact).
    mode: Literal["rate", "pipeline"] = "rate"
    #: Pulses in the block the pipeline mode runs (finite-key effects shrink as it grows).
    pipeline_pulses: int = Field(default=300_000_000, ge=1_000_000, le=10_000_000_000)
    #: Key pool capacity at each end, bits (the key store's size for this link).
    pool_capacity_bits: float = Field(default=1e9, gt=0.0)
    #: Key in the pool at time 0, bits.
    initial_pool_bits: float = Field(default=0.0, ge=0.0)

    def to_link_spec(self) -> LinkSpec:
        """The physical :class:`LinkSpec` of this link (raises ParameterError if invalid)."""
        return LinkSpec(
            length_km=self.length_km,
            loss_db_per_km=self.loss_db_per_km,
            extra_loss_db=self.extra_loss_db,
            detector_efficiency=self.detector_efficiency,
            dark_count_probability=self.dark_count_probability,
            afterpulse_probability=self.afterpulse_probability,
            dead_time_s=self.dead_time_s,
            misalignment_error=self.misalignment_error,
            repetition_rate_hz=self.repetition_rate_hz,
            intensities=self.intensities,
            intensity_probabilities=self.intensity_probabilities,
            basis_probability_z=self.basis_probability_z,
            error_correction_efficiency=self.error_correction_efficiency,
            name=self.id,
            **self.physics,
        )

    @model_validator(mode="after")
    def _physical(self) -> LinkSpecModel:
        if self.a == self.b:
            raise ValueError(f"a link joins two different nodes, both ends are {self.a!r}")
        try:
            self.to_link_spec()
        except ParameterError as exc:
            raise ValueError(str(exc)) from exc
        except TypeError as exc:  # an unknown name in ``physics``
            raise ValueError(f"physics: {exc}") from exc
        if self.protocol in _NO_FORMULA and self.key_rate_bps is None:
            raise ValueError(
                f"the quantum layer has no rate formula for {self.protocol!r}: give key_rate_bps"
                " (a measured rate) or model the link with a protocol it has"
            )
        return self


class SaeSpec(_Model):
    """A secure application entity (ETSI 014 SAE) attached to a node's key manager."""

    id: Identifier
    node: Identifier


class DemandProfile(_Model):
    """How many keys per second an application asks for over time.

    ``constant``: ``rate_keys_per_s`` all the time. ``diurnal``: a day-long cosine between
    ``rate_keys_per_s * (1 - amplitude)`` at ``peak_hour - 12`` and the full rate at
    ``peak_hour``. ``steps``: piecewise constant, ``steps`` is a list of ``[time, rate]``.
    """

    kind: Literal["constant", "diurnal", "steps"] = "constant"
    rate_keys_per_s: float = Field(default=1.0, ge=0.0)
    amplitude: float = Field(default=0.5, ge=0.0, le=1.0)
    peak_hour: float = Field(default=14.0, ge=0.0, lt=24.0)
    steps: tuple[tuple[Seconds, Annotated[float, Field(ge=0.0)]], ...] = ()
    #: Draw request counts from a Poisson law (True) or use the mean (False).
    poisson: bool = True

    @model_validator(mode="after")
    def _steps(self) -> DemandProfile:
        if self.kind == "steps" and not self.steps:
            raise ValueError("kind 'steps' needs a non-empty list of [time, rate] steps")
        return self


class ApplicationSpec(_Model):
    """An application: a master SAE drawing keys shared with a slave SAE (ETSI 014)."""

    id: Identifier
    master: Identifier
    slave: Identifier
    key_size_bits: int = Field(default=256, ge=8, le=65536)
    demand: DemandProfile = DemandProfile()
    #: Routing metric for relays: "shortest" (hops/length) or "widest" (pool and rate).
    routing: Literal["shortest", "widest"] = "shortest"
    #: Number of node-disjoint relay paths whose keys are combined by XOR (ITU-T X.1714).
    paths: int = Field(default=1, ge=1, le=8)
    #: Relay only through these nodes (besides the end points); empty: any trusted node.
    via_nodes: tuple[Identifier, ...] = ()
    #: Never relay through these nodes.
    avoid_nodes: tuple[Identifier, ...] = ()
    #: Each link on the path must deliver at least this secret key rate, bits/s.
    min_rate_bps: float = Field(default=0.0, ge=0.0)
    #: Every relay node must have at least this security level.
    min_security_level: int = Field(default=0, ge=0)
    #: The tenant (virtual QKD network) this application belongs to, if any.
    tenant: Identifier | None = None
    #: Higher priority is served first when key is short.
    priority: int = Field(default=0, ge=0, le=9)


class Reservation(_Model):
    """A tenant's reserved secret key rate between two nodes, bits/s."""

    a: Identifier
    b: Identifier
    rate_bps: float = Field(gt=0.0)


class TenantSpec(_Model):
    """A tenant of a virtual QKD network: reservations on the shared physical network."""

    id: Identifier
    reservations: tuple[Reservation, ...] = ()
    #: Relay this tenant's keys only through these nodes; empty: any trusted node.
    allowed_nodes: tuple[Identifier, ...] = ()


class FailureSpec(_Model):
    """A failure of a link or a node, scheduled or random.

    ``kind``: ``link`` (fibre cut, the link is down), ``node`` (the node is down),
    ``qber`` (the link's QBER rises to ``qber``, an alarm takes it out of service).
    Scheduled: ``at_s`` and ``repair_after_s`` (omit it for a permanent failure).
    Random: ``mtbf_s`` and ``mttr_s`` (exponential times to failure and to repair).
    ``element`` is a link or node id, or ``"*"`` for every link (or node).
    """

    element: Identifier | Literal["*"]
    kind: Literal["link", "node", "qber"] = "link"
    at_s: Seconds | None = None
    repair_after_s: Seconds | None = None
    mtbf_s: Seconds | None = None
    mttr_s: Seconds | None = None
    qber: float = Field(default=0.15, ge=0.0, le=0.5)

    @model_validator(mode="after")
    def _timing(self) -> FailureSpec:
        scheduled = self.at_s is not None
        random = self.mtbf_s is not None
        if scheduled == random:
            raise ValueError("give either at_s (scheduled) or mtbf_s and mttr_s (random)")
        if random and (self.mttr_s is None or self.mtbf_s is None or self.mtbf_s <= 0):
            raise ValueError("a random failure needs mtbf_s > 0 and mttr_s")
        if self.element == "*" and scheduled:
            raise ValueError("element '*' is only for random failures (mtbf_s, mttr_s)")
        return self


class SimulationSettings(_Model):
    """How the simulator runs (not what it simulates)."""

    #: Simulated time step, seconds.
    time_step_s: Seconds = 1.0
    #: Key material is accounted in blocks of this many bits (as key stores hold it).
    block_bits: int = Field(default=256, ge=8, le=1 << 20)
    #: Series are recorded every this many seconds.
    record_every_s: Seconds = 60.0
    #: Key-aware ("widest") routes are recomputed this often, seconds.
    reroute_every_s: Seconds = 300.0
    #: Alarm when a link's pool falls below this fraction of its capacity.
    pool_low_fraction: float = Field(default=0.01, ge=0.0, le=1.0)
    #: Alarm (and take the link out of service) above this QBER.
    qber_threshold: float = Field(default=0.11, ge=0.0, le=0.5)
    #: "vector": NumPy/Numba pools (fast, any size); "keymanager": one real KeyManager per
    #: node with in-process transport and a simulated clock (exact, small networks).
    engine: Literal["vector", "keymanager"] = "vector"


class Scenario(_Model):
    """A whole scenario: the network, its applications, tenants, failures and duration."""

    name: str
    description: str = ""
    duration_s: Seconds = SECONDS_PER_DAY
    seed: int = 0
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpecModel, ...] = ()
    saes: tuple[SaeSpec, ...] = ()
    applications: tuple[ApplicationSpec, ...] = ()
    tenants: tuple[TenantSpec, ...] = ()
    failures: tuple[FailureSpec, ...] = ()
    simulation: SimulationSettings = SimulationSettings()
    #: References for the numbers in the file (free text, shown in the report).
    references: tuple[str, ...] = ()

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id (KeyError if none)."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def sae(self, sae_id: str) -> SaeSpec:
        """The SAE with this id (KeyError if none)."""
        for sae in self.saes:
            if sae.id == sae_id:
                return sae
        raise KeyError(sae_id)

    def with_duration(self, duration_s: float) -> Scenario:
        """The same scenario with another duration, seconds."""
        return self.model_copy(update={"duration_s": float(duration_s)})


# ---------------------------------------------------------------- cross-reference checks


def _reference_errors(s: Scenario) -> list[tuple[tuple[Any, ...], str]]:
    """Checks pydantic cannot do field by field: unique ids and references that resolve."""
    errors: list[tuple[tuple[Any, ...], str]] = []

    def unique(kind: str, items: tuple[Any, ...]) -> set[str]:
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                errors.append(((kind, i, "id"), f"duplicate id {item.id!r}"))
            seen.add(item.id)
        return seen

    node_ids = unique("nodes", s.nodes)
    link_ids = unique("links", s.links)
    sae_ids = unique("saes", s.saes)
    unique("applications", s.applications)
    tenant_ids = unique("tenants", s.tenants)
    for i, link in enumerate(s.links):
        for end in ("a", "b"):
            if getattr(link, end) not in node_ids:
                errors.append((("links", i, end), f"unknown node {getattr(link, end)!r}"))
    for i, sae in enumerate(s.saes):
        if sae.node not in node_ids:
            errors.append((("saes", i, "node"), f"unknown node {sae.node!r}"))
    for i, app in enumerate(s.applications):
        for end in ("master", "slave"):
            if getattr(app, end) not in sae_ids:
                errors.append((("applications", i, end), f"unknown SAE {getattr(app, end)!r}"))
        for field in ("via_nodes", "avoid_nodes"):
            for j, node in enumerate(getattr(app, field)):
                if node not in node_ids:
                    errors.append((("applications", i, field, j), f"unknown node {node!r}"))
        if app.tenant is not None and app.tenant not in tenant_ids:
            errors.append((("applications", i, "tenant"), f"unknown tenant {app.tenant!r}"))
    for i, tenant in enumerate(s.tenants):
        for j, res in enumerate(tenant.reservations):
            for end in ("a", "b"):
                if getattr(res, end) not in node_ids:
                    loc = ("tenants", i, "reservations", j, end)
                    errors.append((loc, f"unknown node {getattr(res, end)!r}"))
        for j, node in enumerate(tenant.allowed_nodes):
            if node not in node_ids:
                errors.append((("tenants", i, "allowed_nodes", j), f"unknown node {node!r}"))
    for i, failure in enumerate(s.failures):
        if failure.element == "*":
            continue
        pool = node_ids if failure.kind == "node" else link_ids
        if failure.element not in pool:
            what = "node" if failure.kind == "node" else "link"
            errors.append((("failures", i, "element"), f"unknown {what} {failure.element!r}"))
    return errors


# ---------------------------------------------------------------- YAML with line numbers


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (or of its deepest existing parent)."""
    node = root
    line = None if node is None else node.start_mark.line + 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(key):
                    nxt = v
                    line = k.start_mark.line + 1
                    break
            if nxt is None:
                return line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int):
            if key >= len(node.value):
                return line
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds tags like 'function-after[...]' or union member names; drop them.
    return tuple(p for p in loc if isinstance(p, int) or ("[" not in p and p != "str"))


def scenario_from_dict(
    data: Any, source: str = "<scenario>", root: yaml.Node | None = None
) -> Scenario:
    """Validate a mapping as a Scenario; raise ScenarioError naming source, line and field."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a mapping (name:, nodes:, links:, ...)")
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = _clean_loc(tuple(err["loc"]))
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line is not None else source
            lines.append(f"{where}: {_format_loc(loc)}: {err['msg']}")
        raise ScenarioError("\n".join(lines)) from None
    problems = _reference_errors(scenario)
    if problems:
        lines = []
        for loc, msg in problems:
            line = _line_of(root, loc)
            where = f"{source}:{line}" if line is not None else source
            lines.append(f"{where}: {_format_loc(loc)}: {msg}")
        raise ScenarioError("\n".join(lines))
    return scenario


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises :class:`ScenarioError` naming the file, the line and the field of every problem
    (unknown keys, wrong types, values out of range, references to unknown ids).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc.strerror or exc}") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{where}: invalid YAML: {problem}") from exc
    return scenario_from_dict(data, source=str(path), root=root)


def dump_scenario(scenario: Scenario) -> str:
    """The scenario as YAML text that ``load_scenario`` reads back to an equal Scenario."""
    data = scenario.model_dump(mode="json", exclude_defaults=True)
    data.setdefault("name", scenario.name)
    data.setdefault("nodes", [n.model_dump(mode="json") for n in scenario.nodes])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
