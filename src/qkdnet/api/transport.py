"""Kx messages between key managers over HTTPS with mutual TLS (ITU-T Y.3803 Kx reference point).

:class:`HttpsTransport` is the live twin of :class:`qkdnet.keys.transport.InProcessTransport`:
``send(message)`` POSTs the message's JSON to ``<peer URL>/kx/v1/message`` with this node's
certificate and returns the peer's answer. :func:`kx_router` is the receiving end: it accepts
a message only from a node certificate whose ID is the message's ``source_node`` and hands it
to ``KeyManager.handle_message``. Authentication of the relay content itself is the key
manager's (a Wegman–Carter tag from link key); TLS adds confidentiality and node identity.
Errors of the peer's key manager come back as :class:`qkdnet.errors.RelayError`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from qkdnet.api.certs import Role
from qkdnet.api.lanes import RelayLanes, forward_hop
from qkdnet.api.tls import client_ssl_context, peer_identity
from qkdnet.errors import ParameterError, QkdnetError, RelayError, Unauthorized
from qkdnet.keys.transport import KxMessage

__all__ = ["KX_PATH", "HttpsTransport", "KxEndpoint", "kx_router"]

KX_PATH = "/kx/v1/message"


class HttpsTransport:
    """Sends Kx messages to peer nodes at ``node_urls`` (node ID → base URL) over mutual TLS.

    ``cert``/``key`` are this node's credentials, ``ca`` the network CA; ``timeout_s`` in s.
    """

    def __init__(
        self, node_id: str, node_urls: Mapping[str, str], cert: str | os.PathLike[str],
        key: str | os.PathLike[str], ca: str | os.PathLike[str], timeout_s: float = 10.0,
    ) -> None:
        self.node_id = node_id
        self.node_urls = dict(node_urls)
        self._http = httpx.Client(
            verify=client_ssl_context(cert, key, ca), timeout=timeout_s,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )
        self.messages_sent = 0
        self.bytes_sent = 0

    def send(self, message: KxMessage) -> KxMessage:
        """Deliver ``message`` to its target node and return the answer (RelayError if not)."""
        url = self.node_urls.get(message.target_node)
        if url is None:
            raise RelayError(f"node {message.target_node!r} has no known address")
        raw = message.encode()
        try:
            response = self._http.post(
                url + KX_PATH, content=raw, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise RelayError(f"node {message.target_node!r} is unreachable: {exc}") from exc
        self.messages_sent += 1
        self.bytes_sent += len(raw)
        if response.status_code != 200:
            try:
                detail = str(response.json().get("message", ""))
            except ValueError:
                detail = response.text[:200]
            raise RelayError(
                f"node {message.target_node!r} refused the {message.kind.value} message "
                f"({response.status_code}): {detail}"
            )
        try:
            return KxMessage.decode(response.content)
        except ParameterError as exc:
            raise RelayError(f"node {message.target_node!r} sent a malformed answer") from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


class KxEndpoint:
    """The receiving end of Kx for node ``node_id``: ``POST /kx/v1/message``.

    A message is accepted only from a node certificate whose ID is its ``source_node`` and
    only when addressed to this node. ``handler`` (``KeyManager.handle_message``) runs on
    its own ``workers`` threads, apart from the ETSI 014 threads, so two nodes relaying to
    each other at once never deadlock, and messages over different links are handled in
    parallel. A relay this node forwards as a trusted node holds the ordered lane of its
    next hop (``lanes``: the node's :class:`qkdnet.api.lanes.RelayLanes`, shared with its
    KmeService), so it cannot overtake another relay over that link direction; a lane
    busy past ``lanes.wait_s`` gets the message refused (503, nothing consumed here; the
    sender's relay fails and is retried). Incoming messages of one link direction need no
    ordering here: the sender's lane sends them one at a time.
    """

    def __init__(
        self, node_id: str, handler: Callable[[KxMessage], KxMessage], workers: int = 16,
        lanes: RelayLanes | None = None,
    ) -> None:
        self.node_id = node_id
        self.handler = handler
        self.lanes = lanes if lanes is not None else RelayLanes(node_id)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"kx-{node_id}")

    def _handle(self, message: KxMessage) -> KxMessage:
        nxt = forward_hop(message)
        if nxt is None:
            return self.handler(message)
        with self.lanes.hold([nxt]):
            return self.handler(message)

    async def answer(self, scope: Mapping[str, Any], raw: bytes) -> JSONResponse:
        """The HTTP answer to one Kx message (``raw``: the request body)."""
        identity = peer_identity(scope)
        if identity is None or identity.role is not Role.KME:
            raise Unauthorized("Kx messages are accepted from node certificates only")
        message = KxMessage.decode(raw)
        if message.source_node != identity.id or message.target_node != self.node_id:
            raise Unauthorized(
                f"certificate of {identity.id!r} cannot send as {message.source_node!r} "
                f"to {message.target_node!r}"
            )
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._handle, message)
        except QkdnetError as exc:
            return JSONResponse(
                {"message": f"{type(exc).__name__}: {exc}"},
                status_code=400 if isinstance(exc, ParameterError) else 503,
            )
        return JSONResponse(answer.to_json())

    def router(self) -> APIRouter:
        """A FastAPI router serving :meth:`answer` (not in the published document)."""
        router = APIRouter(include_in_schema=False)

        @router.post(KX_PATH)
        async def receive(request: Request) -> Any:
            return await self.answer(request.scope, await request.body())

        return router

    def close(self) -> None:
        """Stop the worker threads."""
        self._executor.shutdown(wait=True)


def kx_router(
    node_id: str, handler: Callable[[KxMessage], KxMessage], workers: int = 16
) -> APIRouter:
    """A router for :class:`KxEndpoint` (``node_id``, ``handler``, ``workers``)."""
    return KxEndpoint(node_id, handler, workers).router()
