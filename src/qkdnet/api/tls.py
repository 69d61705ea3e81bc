"""Mutual TLS for the node services: SSL contexts and the peer identity in the ASGI scope.

ETSI GS QKD 014 V1.1.1 §5: HTTPS with mutual authentication; the KME reads the SAE ID from
the client certificate. draft-cisco-skip-02 §4: TLS 1.3. Both run on one listener per node,
so the server context requires TLS 1.3 (which also satisfies ETSI's "TLS 1.2 or later") and
a client certificate signed by the network CA (``CERT_REQUIRED``: the handshake of a client
without one, or with one from another CA, fails before any HTTP is read).

uvicorn does not put the peer certificate into the ASGI scope, so :class:`MutualTLSH11Protocol`
(an ``http=`` protocol class for uvicorn) reads it from the SSL object once per connection and
sets the ASGI TLS extension ``scope["extensions"]["tls"]`` plus ``scope["qkdnet.peer"]``
(an :class:`~qkdnet.api.certs.Identity`) on every request of that connection.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from qkdnet.api.certs import Identity, identity_from_der

__all__ = [
    "PEER_SCOPE_KEY",
    "MutualTLSH11Protocol",
    "client_ssl_context",
    "http_protocol_class",
    "peer_identity",
    "server_ssl_context",
]

PEER_SCOPE_KEY = "qkdnet.peer"
# draft-cisco-skip-02 §4 requires TLS_AES_256_GCM_SHA384 for TLS 1.3; Python's ssl module
# cannot restrict TLS 1.3 suites, but OpenSSL offers this one first, so it is negotiated
# whenever the client supports it. TLS 1.2 suites are irrelevant since 1.3 is the minimum.


def server_ssl_context(
    cert: str | os.PathLike[str], key: str | os.PathLike[str], ca: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A server context: TLS 1.3 only, client certificate required and verified against ``ca``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    ctx.load_verify_locations(cafile=os.fspath(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_ssl_context(
    cert: str | os.PathLike[str] | None, key: str | os.PathLike[str] | None,
    ca: str | os.PathLike[str],
) -> ssl.SSLContext:
    """A client context that checks the server against ``ca`` and presents ``cert``/``key``."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key) if key is not None else None)
    return ctx


class _PeerIdentityMixin:
    """Puts the verified client certificate into each request's scope (see module doc)."""

    app: Any
    cycle: Any
    transport: Any

    def connection_made(self, transport: Any) -> None:  # noqa: D102 — uvicorn's hook
        super().connection_made(transport)  # type: ignore[misc]
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der is None:
            return
        identity = identity_from_der(der)
        pem = ssl.DER_cert_to_PEM_cert(der)
        inner = self.app

        async def app_with_peer(scope: Any, receive: Any, send: Any) -> None:
            extensions = scope.setdefault("extensions", {})
            extensions["tls"] = {"client_cert_chain": [pem], "client_cert_name": identity.id}
            scope[PEER_SCOPE_KEY] = identity
            await inner(scope, receive, send)

        # uvicorn calls ``self.app`` for each request of this connection.
        self.app = app_with_peer

    def shutdown(self) -> None:  # noqa: D102 — uvicorn's hook
        if self.cycle is None or self.cycle.response_complete:
            # An idle keep-alive connection (a neighbour's Kx client, an SAE between two
            # requests): close it at once. A TLS close waits for the peer's close_notify,
            # which an idle client never sends, and would hold the graceful shutdown until
            # its timeout.
            self.transport.abort()
        else:
            super().shutdown()  # type: ignore[misc]


class MutualTLSH11Protocol(_PeerIdentityMixin, H11Protocol):
    """uvicorn's h11 protocol (pure Python), plus the client certificate in the scope."""


def http_protocol_class() -> type:
    """The fastest available protocol class: httptools (C parser, the ``fast`` extra) when
    installed, else h11. ``QKDNET_HTTP=h11`` in the environment forces h11."""
    if os.environ.get("QKDNET_HTTP") == "h11":
        return MutualTLSH11Protocol
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return MutualTLSH11Protocol

    class MutualTLSHttpToolsProtocol(_PeerIdentityMixin, HttpToolsProtocol):
        """uvicorn's httptools protocol, plus the client certificate in the scope."""

    return MutualTLSHttpToolsProtocol


def peer_identity(scope: Any) -> Identity | None:
    """The identity of the verified client certificate of this request, or None."""
    value = scope.get(PEER_SCOPE_KEY)
    return value if isinstance(value, Identity) else None
