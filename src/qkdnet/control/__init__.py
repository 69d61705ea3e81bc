"""qkdnet.control — the QKDN control and management layer (ITU-T Y.3804, ETSI GS QKD 015).

:class:`Controller` holds the topology and the state of links and nodes, finds relay paths
(shortest, widest by key, k node-disjoint) under per-request or per-tenant policies,
reroutes on failures and QBER alarms, admits tenants' reservations, and raises alarms.
"""

from qkdnet.control.controller import Controller, Reservation, Tenant
from qkdnet.control.model import (
    Alarm,
    AlarmKind,
    LinkState,
    LinkType,
    NodeState,
    Route,
    RouteChange,
    RoutePolicy,
    VirtualLink,
)
from qkdnet.control.routing import diagnose, find_paths

__all__ = [
    "Alarm",
    "AlarmKind",
    "Controller",
    "LinkState",
    "LinkType",
    "NodeState",
    "Reservation",
    "Route",
    "RouteChange",
    "RoutePolicy",
    "Tenant",
    "VirtualLink",
    "diagnose",
    "find_paths",
]
