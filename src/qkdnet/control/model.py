"""The controller's model of the network, with ETSI GS QKD 015 names.

A QKD node has a ``qkdn_id``; a QKD link a ``qkdl_id`` and a ``qkdl_type``: ``direct``
(a physical QKD link between neighbours) or ``virtual`` (a multi-hop link made by key
relay, with its hops). Units are in the field names (bits, bits/s, km, seconds).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qkdnet.errors import ParameterError


class LinkType(enum.Enum):
    """ETSI 015 ``qkdl_type``."""

    DIRECT = "direct"
    VIRTUAL = "virtual"


class AlarmKind(enum.Enum):
    """What an alarm is about (QKDN management layer, Y.3804 fault management)."""

    LINK_DOWN = "link_down"
    NODE_DOWN = "node_down"
    QBER_HIGH = "qber_high"
    POOL_LOW = "pool_low"
    RESERVATION_UNMET = "reservation_unmet"
    ROUTE_LOST = "route_lost"


@dataclass
class NodeState:
    """A QKD node (``qkdn_id``): trusted for relay or not, up or down."""

    qkdn_id: str
    trusted: bool = True
    up: bool = True
    security_level: int = 1
    lat: float | None = None
    lon: float | None = None


@dataclass
class LinkState:
    """A direct QKD link (``qkdl_id``) between ``local_qkdn_id`` and ``remote_qkdn_id``."""

    qkdl_id: str
    local_qkdn_id: str
    remote_qkdn_id: str
    length_km: float = 0.0
    key_rate_bps: float = 0.0
    qber: float = 0.0
    pool_bits: float = 0.0
    pool_capacity_bits: float = 1e9
    #: Administratively and physically up (no fibre cut).
    up: bool = True
    #: Taken out of service by a QBER alarm.
    qber_alarm: bool = False
    qkdl_type: LinkType = LinkType.DIRECT

    @property
    def in_service(self) -> bool:
        """Up and without a QBER alarm: usable for relay."""
        return self.up and not self.qber_alarm

    def ends(self) -> tuple[str, str]:
        """The two node ids."""
        return self.local_qkdn_id, self.remote_qkdn_id


@dataclass(frozen=True)
class VirtualLink:
    """An ETSI 015 virtual link: keys between two nodes relayed along ``hops``."""

    qkdl_id: str
    local_qkdn_id: str
    remote_qkdn_id: str
    hops: tuple[str, ...]
    qkdl_type: LinkType = LinkType.VIRTUAL


@dataclass(frozen=True)
class Alarm:
    """An alarm raised (``active=True``) or cleared at ``time_s`` for an element."""

    time_s: float
    kind: AlarmKind
    element: str
    message: str
    active: bool = True


@dataclass(frozen=True)
class RoutePolicy:
    """Constraints on a relay path, per request or per tenant.

    ``metric``: ``shortest`` (fibre length) or ``widest`` (the path whose weakest link
    holds the most key: pool plus rate over ``horizon_s``). ``paths``: how many
    node-disjoint paths (keys combined by XOR, ITU-T X.1714). ``via_nodes``: relay only
    through these nodes (empty: any). ``avoid_nodes``: never through these.
    ``min_rate_bps``: each hop must deliver at least this rate. ``min_security_level``:
    each relay node must have at least this level.
    """

    metric: str = "shortest"
    paths: int = 1
    via_nodes: frozenset[str] = frozenset()
    avoid_nodes: frozenset[str] = frozenset()
    min_rate_bps: float = 0.0
    min_security_level: int = 0
    horizon_s: float = 60.0

    def __post_init__(self) -> None:
        if self.metric not in ("shortest", "widest"):
            raise ParameterError("metric", f"must be 'shortest' or 'widest', got {self.metric!r}")
        if self.paths < 1:
            raise ParameterError("paths", f"must be >= 1, got {self.paths}")
        if self.min_rate_bps < 0:
            raise ParameterError("min_rate_bps", f"must be >= 0 bits/s, got {self.min_rate_bps}")

    @classmethod
    def from_any(cls, policy: Any) -> RoutePolicy:
        """A RoutePolicy from ``None``, a RoutePolicy, or any object with like-named
        attributes (e.g. ``qkdnet.keys.RelayPolicy``: ``paths``, ``allowed_nodes`` or
        ``via_nodes``, ``avoided_nodes`` or ``avoid_nodes``)."""
        if policy is None:
            return cls()
        if isinstance(policy, RoutePolicy):
            return policy

        def get(*names: str, default: Any = None) -> Any:
            for name in names:
                value = getattr(policy, name, None)
                if value is not None:
                    return value
            return default

        return cls(
            metric=str(get("metric", default="shortest")),
            paths=int(get("paths", default=1)),
            via_nodes=frozenset(get("via_nodes", "allowed_nodes", default=()) or ()),
            avoid_nodes=frozenset(get("avoid_nodes", "avoided_nodes", default=()) or ()),
            min_rate_bps=float(get("min_rate_bps", default=0.0)),
            min_security_level=int(get("min_security_level", "security_level", default=0)),
        )

    def merged(self, other: RoutePolicy) -> RoutePolicy:
        """The stricter of two policies (e.g. a request's and its tenant's)."""
        via = self.via_nodes & other.via_nodes if self.via_nodes and other.via_nodes else (
            self.via_nodes or other.via_nodes
        )
        return RoutePolicy(
            metric=self.metric,
            paths=max(self.paths, other.paths),
            via_nodes=via,
            avoid_nodes=self.avoid_nodes | other.avoid_nodes,
            min_rate_bps=max(self.min_rate_bps, other.min_rate_bps),
            min_security_level=max(self.min_security_level, other.min_security_level),
            horizon_s=self.horizon_s,
        )


@dataclass
class Route:
    """The paths a relay between ``source`` and ``target`` currently uses."""

    route_id: str
    source: str
    target: str
    policy: RoutePolicy
    paths: list[list[str]] = field(default_factory=list)
    tenant: str | None = None
    #: Why there is no path, when ``paths`` is empty.
    failure: str | None = None

    def links_used(self) -> set[frozenset[str]]:
        """The node pairs (KM links) the route's paths cross."""
        used: set[frozenset[str]] = set()
        for path in self.paths:
            used.update(frozenset(pair) for pair in zip(path, path[1:], strict=False))
        return used

    def nodes_used(self) -> set[str]:
        """Every node on any path."""
        return {n for path in self.paths for n in path}


@dataclass(frozen=True)
class RouteChange:
    """A reroute (or a loss of every path) decided by the controller at ``time_s``."""

    time_s: float
    route_id: str
    old_paths: tuple[tuple[str, ...], ...]
    new_paths: tuple[tuple[str, ...], ...]
    reason: str


def path_links(path: Sequence[str]) -> list[frozenset[str]]:
    """The node pairs along a path."""
    return [frozenset(pair) for pair in zip(path, path[1:], strict=False)]
