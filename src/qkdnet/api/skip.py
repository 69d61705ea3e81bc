# ruff: noqa: N815  -- field names are the standard's own, letter for letter
"""Cisco SKIP, draft-cisco-skip-02: key delivery to routers and encryptors, over the same pools.

Paths (§4, GET only): ``/capabilities``, ``/key?remoteSystemID=B[&size=BITS]``,
``/key/{keyId}?remoteSystemID=A``, ``/entropy[?minentropy=BITS]``. Keys and key IDs are
hex strings; a key ID is the 128-bit UUID of the key block written as 32 hex digits (it is
random, so it reveals nothing about the key, §4.2). Sizes are in bits. Codes: 200; 400 for
a malformed or unknown keyId or parameter; 404 unknown path; 405 other methods (FastAPI's
routing); 503 when there is no key or entropy. Here a system ID names a node (a key
provider), not an application.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict

from qkdnet.api.service import KmeService
from qkdnet.errors import ParameterError

__all__ = ["Capabilities", "EntropyResponse", "SkipKey", "router"]

DEFAULT_KEY_BITS = 256  # draft-cisco-skip-02 §4.2: default key size
DEFAULT_ENTROPY_BITS = 256  # §4.4: default minentropy
MAX_ENTROPY_BITS = 65_536


class Capabilities(BaseModel):
    """§4.1 capabilities of this key provider."""

    model_config = ConfigDict(extra="forbid")
    entropy: bool
    key: bool
    algorithm: str
    localSystemID: str
    remoteSystemID: list[str]


class SkipKey(BaseModel):
    """§4.2/§4.3 a key: ``keyId`` and ``key``, both hex."""

    model_config = ConfigDict(extra="forbid")
    keyId: str
    key: str


class EntropyResponse(BaseModel):
    """§4.4 entropy: ``randomStr`` (hex) with ``minentropy`` bits."""

    model_config = ConfigDict(extra="forbid")
    randomStr: str
    minentropy: int


class _SkipError(BaseModel):
    message: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": _SkipError, "description": "Bad request"},
    401: {"model": _SkipError, "description": "Unauthorized"},
    503: {"model": _SkipError, "description": "No key or entropy available"},
}

router = APIRouter(tags=["Cisco SKIP (draft-cisco-skip-02)"])


def _service(request: Request) -> KmeService:
    service: KmeService = request.app.state.kme
    return service


@router.get("/capabilities", response_model=Capabilities, responses=_ERRORS)
async def capabilities(request: Request) -> dict[str, Any]:
    """What this key provider offers and which remote systems it shares keys with."""
    service = _service(request)
    service.authenticate_skip(request.scope)
    return {
        "entropy": True,
        "key": True,
        "algorithm": "qkd",
        "localSystemID": service.node_id,
        "remoteSystemID": [n for n in service.peer_nodes if n != service.node_id],
    }


@router.get("/key", response_model=SkipKey, responses=_ERRORS)
async def new_key(
    request: Request,
    remoteSystemID: Annotated[str, Query(min_length=1)],
    size: Annotated[int, Query(ge=8, le=8192, json_schema_extra={"multipleOf": 8})] = (
        DEFAULT_KEY_BITS
    ),
) -> dict[str, str]:
    """A new key of ``size`` bits shared with ``remoteSystemID``; the peer fetches it by ID."""
    service = _service(request)
    service.authenticate_skip(request.scope)
    if size % 8:
        raise ParameterError("size", "must be a multiple of 8 bits")
    key_id, key = await service.skip_new_key(remoteSystemID, size)
    return {"keyId": key_id.hex, "key": key.hex()}


@router.get("/key/{keyId}", response_model=SkipKey, responses=_ERRORS)
async def key_by_id(
    request: Request, keyId: str, remoteSystemID: Annotated[str, Query(min_length=1)]
) -> dict[str, str]:
    """The key ``keyId`` that ``remoteSystemID`` obtained with ``/key``; delivered once."""
    service = _service(request)
    service.authenticate_skip(request.scope)
    if len(keyId) != 32:
        raise ParameterError("keyId", "must be 32 hex digits (a 128-bit key ID)")
    try:
        key_id = uuid.UUID(hex=keyId)
    except ValueError as exc:
        raise ParameterError("keyId", "must be 32 hex digits (a 128-bit key ID)") from exc
    key = await service.skip_key_by_id(remoteSystemID, key_id)
    return {"keyId": key_id.hex, "key": key.hex()}


@router.get("/entropy", response_model=EntropyResponse, responses=_ERRORS)
async def entropy(
    request: Request,
    minentropy: Annotated[int, Query(ge=8, le=MAX_ENTROPY_BITS)] = DEFAULT_ENTROPY_BITS,
) -> dict[str, Any]:
    """``minentropy`` bits of fresh randomness from the operating system's CSPRNG, in hex.

    (No quantum random number generator is attached; the OS CSPRNG is the entropy source.)
    """
    _service(request).authenticate_skip(request.scope)
    nbytes = (minentropy + 7) // 8
    return {"randomStr": secrets.token_bytes(nbytes).hex(), "minentropy": nbytes * 8}
