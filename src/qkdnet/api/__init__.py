"""qkdnet.api — key delivery to applications (the Ak interface): ETSI GS QKD 014 and Cisco
SKIP over mutual TLS, the node services of ``qkdnet serve``, and a client.

* :func:`create_app` — one node's FastAPI app (ETSI 014 under ``/api/v1/keys``, SKIP under
  ``/capabilities``, ``/key``, ``/entropy``) over a :class:`KmeService`;
* :class:`NodeServer` — uvicorn with TLS 1.3, client certificates required, the SAE ID read
  from the certificate; :class:`LiveNode` — a whole live node (store, KeyManager, HTTPS Kx
  transport, link feeders, server);
* :class:`KmeClient` / :class:`AsyncKmeClient` — ETSI 014 clients (httpx);
* :func:`create_ca`, :func:`issue_certificate`, :func:`issue_network` — the network's PKI;
* :class:`HttpsTransport` — Kx messages between key managers over HTTPS.

See docs/api.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qkdnet.api.app import create_app
from qkdnet.api.certs import (
    CertPaths,
    Identity,
    NetworkPki,
    Role,
    create_ca,
    issue_certificate,
    issue_network,
)
from qkdnet.api.client import AsyncKmeClient, DeliveredKey, KmeClient
from qkdnet.api.server import NodeServer
from qkdnet.api.service import KmeLimits, KmeService
from qkdnet.api.transport import HttpsTransport

if TYPE_CHECKING:
    from qkdnet.api.node import LiveNode


def __getattr__(name: str) -> Any:
    # Imported on demand: ``python -m qkdnet.api.node`` must not find itself half-imported.
    if name == "LiveNode":
        from qkdnet.api.node import LiveNode

        return LiveNode
    raise AttributeError(name)

__all__ = [
    "AsyncKmeClient",
    "CertPaths",
    "DeliveredKey",
    "HttpsTransport",
    "Identity",
    "KmeClient",
    "KmeLimits",
    "KmeService",
    "LiveNode",
    "NetworkPki",
    "NodeServer",
    "Role",
    "create_app",
    "create_ca",
    "issue_certificate",
    "issue_network",
]
