"""Kq-1 from a real QKD device: an adapter that pulls keys from a vendor's ETSI GS QKD 014
endpoint (HTTPS with mutual TLS) and deposits them in a key manager's link pool.

Many commercial QKD devices expose their keys only through ETSI 014 (the key manager
then plays the SAE). The master-side adapter calls ``enc_keys``; the slave-side adapter at
the other end of the link fetches the same keys by ID with ``dec_keys``. Both ends store
them under the device's key IDs, so a key ID means the same bits at both ends.
"""

from __future__ import annotations

import base64
import ssl
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from qkdnet.errors import (
    KeyExhausted,
    KeyManagementError,
    KeyNotFound,
    ParameterError,
    Unauthorized,
)
from qkdnet.keys.clock import Clock, SystemClock
from qkdnet.keys.store import KeyBlock


class Etsi014DeviceSource:
    """Client of one QKD device's ETSI 014 API (a KME), authenticated by a client certificate.

    ``base_url`` e.g. ``https://10.0.0.5:8443``; ``peer_sae_id`` the SAE ID of the key
    manager at the other end of the link (the *slave* for ``enc_keys``, the *master* for
    ``dec_keys``); ``cert``/``key`` this key manager's client certificate and private key
    (PEM files); ``ca`` the CA that signed the device's server certificate.
    Sizes are in bits; timeouts in seconds.
    """

    def __init__(
        self,
        base_url: str,
        peer_sae_id: str,
        *,
        cert: str | Path,
        key: str | Path,
        ca: str | Path,
        link_id: str,
        clock: Clock | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not base_url.startswith("https://"):
            raise ParameterError("base_url", f"ETSI 014 requires HTTPS, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.peer_sae_id = peer_sae_id
        self.link_id = link_id
        self.clock = clock or SystemClock()
        try:
            ctx = ssl.create_default_context(cafile=str(ca))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # ETSI 014: TLS 1.2 or later
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ParameterError("cert", f"cannot load TLS credentials: {exc}") from exc
        self._client = httpx.Client(verify=ctx, timeout=timeout_s)

    def _url(self, what: str) -> str:
        return f"{self.base_url}/api/v1/keys/{quote(self.peer_sae_id, safe='')}/{what}"

    def _call(self, method: str, what: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._client.request(method, self._url(what), json=body)
        except httpx.HTTPError as exc:
            raise KeyManagementError(f"QKD device at {self.base_url} unreachable: {exc}") from exc
        if resp.status_code == 200:
            return resp.json()
        try:
            message = resp.json().get("message", resp.text)
        except ValueError:
            message = resp.text
        if resp.status_code == 401:
            raise Unauthorized(f"QKD device at {self.base_url} refused this key manager")
        if resp.status_code == 400:
            if "not found" in message:
                raise KeyNotFound(f"QKD device: {message}")
            raise ParameterError("request", f"QKD device: {message}")
        if resp.status_code == 503:
            raise KeyExhausted(f"QKD device at {self.base_url}: {message}")
        raise KeyManagementError(f"QKD device answered {resp.status_code}: {message}")

    def _blocks(self, container: Any) -> list[KeyBlock]:
        try:
            now = self.clock.now()
            return [
                KeyBlock(uuid.UUID(k["key_ID"]), base64.b64decode(k["key"], validate=True),
                         self.link_id, now)
                for k in container["keys"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyManagementError(f"QKD device sent a malformed key container: {exc}") from exc

    def status(self) -> dict[str, Any]:
        """The device's ETSI 014 Status object for the link."""
        result: dict[str, Any] = self._call("GET", "status")
        return result

    def enc_keys(self, number: int, size_bits: int) -> list[KeyBlock]:
        """New keys from the device (master side): ``number`` keys of ``size_bits`` bits."""
        return self._blocks(self._call("POST", "enc_keys", {"number": number, "size": size_bits}))

    def dec_keys(self, key_ids: Sequence[uuid.UUID]) -> list[KeyBlock]:
        """The keys ``key_ids`` the master side obtained (slave side)."""
        body = {"key_IDs": [{"key_ID": str(k)} for k in key_ids]}
        return self._blocks(self._call("POST", "dec_keys", body))

    def close(self) -> None:
        """Close the HTTPS connection pool."""
        self._client.close()


def pull_link_keys(
    master: Etsi014DeviceSource,
    slave: Etsi014DeviceSource,
    master_km: Any,
    slave_km: Any,
    number: int,
    size_bits: int,
) -> list[uuid.UUID]:
    """One Kq-1 round for a device link: ``enc_keys`` at the master end, ``dec_keys`` with
    the same IDs at the slave end, deposit at both key managers (``KeyManager``); returns
    the IDs. The slave end deposits only keys whose IDs the master end stored.

    In a deployment the two ends run on different nodes and the IDs travel between the
    key managers; here the caller carries them (simulation and tests).
    """
    blocks = master.enc_keys(number, size_bits)
    master_km.deposit_link_keys(master.link_id, blocks)
    ids = [b.key_id for b in blocks]
    slave_km.deposit_link_keys(slave.link_id, slave.dec_keys(ids))
    return ids
