"""A client for ETSI GS QKD 014 KMEs (ours or anyone's), over httpx with mutual TLS.

:class:`KmeClient` (sync) and :class:`AsyncKmeClient` (asyncio) speak only the standard:
``status``, ``get_key`` (enc_keys, POST), ``get_key_with_ids`` (dec_keys, POST). Key sizes
are in bits; returned keys are decoded from Base64 to bytes. HTTP errors become qkdnet
errors: 400 with the standard's "not found" message → :class:`KeyNotFound`; other 400 →
:class:`ParameterError`; 401 → :class:`Unauthorized`; 503 → :class:`KeyExhausted` when the
KME says the pool is short, else :class:`KeyManagementError`. TLS failures → Unauthorized.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from qkdnet.api.etsi014 import KeyContainer, Status
from qkdnet.api.service import MSG_KEYS_NOT_FOUND
from qkdnet.api.tls import client_ssl_context
from qkdnet.errors import (
    KeyExhausted,
    KeyManagementError,
    KeyNotFound,
    ParameterError,
    Unauthorized,
)

__all__ = ["AsyncKmeClient", "DeliveredKey", "KmeClient"]


@dataclass(frozen=True)
class DeliveredKey:
    """A key as an SAE receives it: its ID and its bytes."""

    key_id: uuid.UUID
    key: bytes


def _raise_for(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = response.text[:200]
    code = response.status_code
    if code == 400 and message == MSG_KEYS_NOT_FOUND:
        raise KeyNotFound(message)
    if code == 400:
        raise ParameterError("request", message)
    if code == 401:
        raise Unauthorized(message or "unauthorized")
    if code == 503 and "key pool" in message:
        raise KeyExhausted(message)
    raise KeyManagementError(f"KME answered {code}: {message}")


def _keys(response: httpx.Response) -> list[DeliveredKey]:
    _raise_for(response)
    container = KeyContainer.model_validate_json(response.content)
    return [DeliveredKey(uuid.UUID(k.key_ID), base64.b64decode(k.key)) for k in container.keys]


def _enc_body(
    number: int, size_bits: int | None, additional_slaves: Sequence[str],
    extension_mandatory: Sequence[dict[str, Any]] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"number": number}
    if size_bits is not None:
        body["size"] = size_bits
    if additional_slaves:
        body["additional_slave_SAE_IDs"] = list(additional_slaves)
    if extension_mandatory:
        body["extension_mandatory"] = list(extension_mandatory)
    return body


def _dec_body(key_ids: Sequence[uuid.UUID | str]) -> dict[str, Any]:
    return {"key_IDs": [{"key_ID": str(k)} for k in key_ids]}


def _path(sae_id: str, op: str) -> str:
    return f"/api/v1/keys/{quote(sae_id, safe='')}/{op}"


class KmeClient:
    """A synchronous ETSI 014 client for one SAE: ``cert``/``key`` are its PEM credentials,
    ``ca`` the CA that signed the KME's certificate; ``timeout_s`` in seconds."""

    def __init__(
        self, base_url: str, cert: str | os.PathLike[str], key: str | os.PathLike[str],
        ca: str | os.PathLike[str], timeout_s: float = 30.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, verify=client_ssl_context(cert, key, ca), timeout=timeout_s
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            raise Unauthorized(f"TLS or connection failure: {exc}") from exc
        except httpx.HTTPError as exc:
            raise KeyManagementError(f"KME unreachable: {exc}") from exc

    def status(self, slave_sae_id: str) -> Status:
        """§5.1 Get status of the keys shared with ``slave_sae_id``."""
        response = self._send("GET", _path(slave_sae_id, "status"))
        _raise_for(response)
        return Status.model_validate_json(response.content)

    def get_key(
        self, slave_sae_id: str, number: int = 1, size_bits: int | None = None,
        additional_slaves: Sequence[str] = (),
        extension_mandatory: Sequence[dict[str, Any]] | None = None,
    ) -> list[DeliveredKey]:
        """§5.2 Get key (enc_keys): ``number`` new keys of ``size_bits`` bits."""
        body = _enc_body(number, size_bits, additional_slaves, extension_mandatory)
        return _keys(self._send("POST", _path(slave_sae_id, "enc_keys"), json=body))

    def get_key_with_ids(
        self, master_sae_id: str, key_ids: Sequence[uuid.UUID | str]
    ) -> list[DeliveredKey]:
        """§5.3 Get key with key IDs (dec_keys): the keys ``master_sae_id`` obtained for us."""
        return _keys(self._send("POST", _path(master_sae_id, "dec_keys"), json=_dec_body(key_ids)))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> KmeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncKmeClient:
    """The asyncio twin of :class:`KmeClient` (same arguments, same methods, awaited)."""

    def __init__(
        self, base_url: str, cert: str | os.PathLike[str], key: str | os.PathLike[str],
        ca: str | os.PathLike[str], timeout_s: float = 30.0,
        limits: httpx.Limits | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, verify=client_ssl_context(cert, key, ca), timeout=timeout_s,
            limits=limits or httpx.Limits(max_connections=100, max_keepalive_connections=100),
        )

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, **kwargs)
        except httpx.ConnectError as exc:
            raise Unauthorized(f"TLS or connection failure: {exc}") from exc
        except httpx.HTTPError as exc:
            raise KeyManagementError(f"KME unreachable: {exc}") from exc

    async def status(self, slave_sae_id: str) -> Status:
        """§5.1 Get status."""
        response = await self._send("GET", _path(slave_sae_id, "status"))
        _raise_for(response)
        return Status.model_validate_json(response.content)

    async def get_key(
        self, slave_sae_id: str, number: int = 1, size_bits: int | None = None,
        additional_slaves: Sequence[str] = (),
        extension_mandatory: Sequence[dict[str, Any]] | None = None,
    ) -> list[DeliveredKey]:
        """§5.2 Get key (enc_keys)."""
        body = _enc_body(number, size_bits, additional_slaves, extension_mandatory)
        return _keys(await self._send("POST", _path(slave_sae_id, "enc_keys"), json=body))

    async def get_key_with_ids(
        self, master_sae_id: str, key_ids: Sequence[uuid.UUID | str]
    ) -> list[DeliveredKey]:
        """§5.3 Get key with key IDs (dec_keys)."""
        body = _dec_body(key_ids)
        return _keys(await self._send("POST", _path(master_sae_id, "dec_keys"), json=body))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncKmeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


