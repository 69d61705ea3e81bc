"""Kx messages between key managers and the transports that carry them (Y.3803).

A :class:`KxMessage` is a typed, frozen record with a JSON form (so the same message goes
in-process in simulation and over HTTPS with mutual TLS between live nodes, written in
``qkdnet.api``). Authentication is not the transport's job: the key manager tags every
relay message with a Wegman–Carter MAC keyed from link key (:mod:`qkdnet.keys.mac`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from qkdnet.errors import ParameterError, RelayError


class MessageKind(StrEnum):
    """Kx message kinds, after Y.3803: key relay, relay completion, a free path probe, and
    key-ID synchronisation for links whose keys come from a device's ETSI 014 API."""

    RELAY = "relay"
    RELAY_COMPLETE = "relay_complete"
    RELAY_FAILED = "relay_failed"
    PROBE = "probe"
    PROBE_RESULT = "probe_result"
    KEY_SYNC = "key_sync"
    KEY_SYNC_DONE = "key_sync_done"


@dataclass(frozen=True)
class KxMessage:
    """One key-manager to key-manager message over one link (``link_id``).

    ``body`` holds JSON values only; ``tag`` is the hex Wegman–Carter tag over
    :meth:`signed_bytes` (empty for unauthenticated probes).
    """

    kind: MessageKind
    source_node: str
    target_node: str
    link_id: str
    body: Mapping[str, Any] = field(default_factory=dict)
    tag: str = ""

    def signed_bytes(self) -> bytes:
        """Canonical bytes the MAC covers: everything but the tag, as sorted compact JSON."""
        return json.dumps(
            [self.kind.value, self.source_node, self.target_node, self.link_id, self.body],
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for HTTPS transports)."""
        return {
            "kind": self.kind.value,
            "source_node": self.source_node,
            "target_node": self.target_node,
            "link_id": self.link_id,
            "body": dict(self.body),
            "tag": self.tag,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KxMessage:
        """Inverse of :meth:`to_json`; raises ParameterError for a malformed message."""
        try:
            return cls(
                kind=MessageKind(data["kind"]),
                source_node=str(data["source_node"]),
                target_node=str(data["target_node"]),
                link_id=str(data["link_id"]),
                body=dict(data.get("body") or {}),
                tag=str(data.get("tag", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ParameterError("message", f"malformed Kx message: {exc}") from exc

    def encode(self) -> bytes:
        """UTF-8 JSON bytes of the message."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> KxMessage:
        """Parse :meth:`encode`'s bytes."""
        try:
            return cls.from_json(json.loads(raw))
        except json.JSONDecodeError as exc:
            raise ParameterError("message", f"not JSON: {exc}") from exc


def b64(data: bytes) -> str:
    """Base64 text of ``data``."""
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    """Bytes of base64 ``text``; raises ParameterError if malformed."""
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (ValueError, TypeError) as exc:
        raise ParameterError("ciphertext", "malformed base64") from exc


@runtime_checkable
class Transport(Protocol):
    """Carries a Kx message to ``message.target_node`` and returns that node's answer.

    Implementations raise :class:`qkdnet.errors.RelayError` when the peer cannot be reached;
    errors raised by the peer's key manager come back as themselves (in process) or as a
    RelayError (over the network).
    """

    def send(self, message: KxMessage) -> KxMessage:
        """Deliver ``message`` to its target node and return that node's answer."""
        ...


Handler = Callable[[KxMessage], KxMessage]
Tap = Callable[[KxMessage, KxMessage | None], None]


class InProcessTransport:
    """All key managers in one process (simulation): ``attach`` each, then ``send``.

    Every message is encoded to bytes and decoded again on the way, so nothing is shared
    between managers but what a network transport would carry. ``taps`` are called with
    each (request, response) pair: an eavesdropper's (or a compromised node's) view in tests.
    """

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self.taps: list[Tap] = []
        self.messages_sent = 0
        self.bytes_sent = 0

    def attach(self, node_id: str, handler: Handler) -> None:
        """Route messages for ``node_id`` to ``handler`` (usually ``KeyManager.handle_message``)."""
        self._handlers[node_id] = handler

    def detach(self, node_id: str) -> None:
        """Make ``node_id`` unreachable (a failed node)."""
        self._handlers.pop(node_id, None)

    def send(self, message: KxMessage) -> KxMessage:
        """Deliver ``message`` and return the answer; RelayError if the node is not attached."""
        handler = self._handlers.get(message.target_node)
        if handler is None:
            raise RelayError(f"node {message.target_node!r} is unreachable")
        raw = message.encode()
        self.messages_sent += 1
        self.bytes_sent += len(raw)
        response: KxMessage | None = None
        try:
            response = KxMessage.decode(handler(KxMessage.decode(raw)).encode())
            return response
        finally:
            for tap in self.taps:
                tap(message, response)
