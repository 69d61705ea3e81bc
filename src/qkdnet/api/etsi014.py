# ruff: noqa: N815  -- field names are the standard's own, letter for letter
"""ETSI GS QKD 014 V1.1.1 (2019-02): the REST key delivery API of a KME, field for field.

Data formats (§6): Status, Key request, Key container, Key IDs, Error. Methods (§5):
``GET /api/v1/keys/{slave_SAE_ID}/status``, ``POST|GET .../{slave_SAE_ID}/enc_keys``,
``POST|GET .../{master_SAE_ID}/dec_keys``. Key sizes are in bits; keys travel Base64-encoded.

The standard's own 400 messages are used word for word (see ``MSG_*``). The caller's SAE
ID is never taken from the request: it is the CN of the verified client certificate.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from qkdnet.api.service import (
    MSG_EXTENSION_MANDATORY_UNMET,
    MSG_EXTENSION_MANDATORY_UNSUPPORTED,
    MSG_KEYS_NOT_FOUND,
    MSG_SIZE_MULTIPLE_OF_8,
    KmeService,
)
from qkdnet.errors import ParameterError

__all__ = [
    "MSG_EXTENSION_MANDATORY_UNMET",
    "MSG_EXTENSION_MANDATORY_UNSUPPORTED",
    "MSG_KEYS_NOT_FOUND",
    "MSG_SIZE_MULTIPLE_OF_8",
    "Error",
    "Key",
    "KeyContainer",
    "KeyIDItem",
    "KeyIDs",
    "KeyRequest",
    "Status",
    "router",
]

PREFIX = "/api/v1/keys"
_Obj = dict[str, Any]


class Error(BaseModel):
    """§6.6 Error: ``message`` and optional ``details`` (a list of objects)."""

    model_config = ConfigDict(extra="forbid")
    message: str
    details: list[_Obj] | None = None


class Status(BaseModel):
    """§6.1 Status of the key pool between this KME and the slave SAE's KME (sizes in bits)."""

    model_config = ConfigDict(extra="forbid")
    source_KME_ID: str
    target_KME_ID: str
    master_SAE_ID: str
    slave_SAE_ID: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_SAE_ID_count: int
    status_extension: _Obj | None = None


class KeyRequest(BaseModel):
    """§6.2 Key request; every field optional, ``{}`` allowed. ``size`` is in bits."""

    model_config = ConfigDict(extra="forbid")
    number: Annotated[StrictInt, Field(ge=1)] | None = None
    size: Annotated[StrictInt, Field(ge=1, json_schema_extra={"multipleOf": 8})] | None = None
    additional_slave_SAE_IDs: list[Annotated[str, Field(min_length=1)]] | None = None
    extension_mandatory: list[_Obj] | None = None
    extension_optional: list[_Obj] | None = None


class Key(BaseModel):
    """One key of a §6.3 Key container: ``key_ID`` (UUID) and ``key`` (Base64)."""

    model_config = ConfigDict(extra="forbid")
    key_ID: str
    key_ID_extension: _Obj | None = None
    key: str
    key_extension: _Obj | None = None


class KeyContainer(BaseModel):
    """§6.3 Key container. (The standard's table prints ``Keys``; the field is ``keys``.)"""

    model_config = ConfigDict(extra="forbid")
    keys: list[Key]
    key_container_extension: _Obj | None = None


class KeyIDItem(BaseModel):
    """One entry of §6.4 Key IDs."""

    model_config = ConfigDict(extra="forbid")
    key_ID: uuid.UUID
    key_ID_extension: _Obj | None = None


class KeyIDs(BaseModel):
    """§6.4 Key IDs: the body of a POST dec_keys."""

    model_config = ConfigDict(extra="forbid")
    key_IDs: Annotated[list[KeyIDItem], Field(min_length=1)]
    key_IDs_extension: _Obj | None = None


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Error, "description": "Bad request format"},
    401: {"model": Error, "description": "Unauthorized"},
    503: {"model": Error, "description": "Error on server side"},
}

router = APIRouter(prefix=PREFIX, tags=["ETSI GS QKD 014"])


def _container(keys: Sequence[tuple[uuid.UUID, bytes]]) -> Response:
    # Serialised here and returned as a Response, which FastAPI passes through: validating
    # our own output against the response model again would cost a large share of the
    # request time at thousands of keys per second. The format is the model's (tested).
    body = {
        "keys": [
            {"key_ID": str(key_id), "key": base64.b64encode(bits).decode("ascii")}
            for key_id, bits in keys
        ]
    }
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _service(request: Request) -> KmeService:
    service: KmeService = request.app.state.kme
    return service


async def enc_keys_response(
    service: KmeService, scope: Mapping[str, Any], slave_SAE_ID: str, number: int | None,
    size: int | None, additional: Sequence[str] = (), mandatory: Sequence[_Obj] = (),
) -> Response:
    """enc_keys for the SAE of this request's certificate, as a Key container response."""
    master = service.authenticate_sae(scope)
    if size is not None and size % 8 != 0:
        raise ParameterError("size", MSG_SIZE_MULTIPLE_OF_8)
    options = service.parse_mandatory_extensions(mandatory)
    keys = await service.enc_keys(master, slave_SAE_ID, number, size, additional, options)
    return _container(keys)


@router.get(
    "/{slave_SAE_ID}/status", response_model=Status, response_model_exclude_none=True,
    responses=_ERRORS, summary="Get status",
)
async def get_status(request: Request, slave_SAE_ID: str) -> _Obj:
    """Status of the keys between the calling (master) SAE and ``slave_SAE_ID`` (§5.1)."""
    service = _service(request)
    master = service.authenticate_sae(request.scope)
    return await service.status(master, slave_SAE_ID)


@router.post(
    "/{slave_SAE_ID}/enc_keys", response_model=KeyContainer, response_model_exclude_none=True,
    responses=_ERRORS, summary="Get key",
)
async def post_enc_keys(
    request: Request, slave_SAE_ID: str, body: Annotated[KeyRequest | None, Body()] = None
) -> Response:
    """New keys for the calling (master) SAE, shared with ``slave_SAE_ID`` and any
    ``additional_slave_SAE_IDs`` (§5.2, POST form)."""
    req = body or KeyRequest()
    return await enc_keys_response(
        _service(request), request.scope, slave_SAE_ID, req.number, req.size,
        req.additional_slave_SAE_IDs or (), req.extension_mandatory or (),
    )


@router.get(
    "/{slave_SAE_ID}/enc_keys", response_model=KeyContainer, response_model_exclude_none=True,
    responses=_ERRORS, summary="Get key (GET form)",
)
async def get_enc_keys(
    request: Request, slave_SAE_ID: str,
    number: Annotated[int | None, Query(ge=1)] = None,
    size: Annotated[int | None, Query(ge=1, json_schema_extra={"multipleOf": 8})] = None,
) -> Response:
    """The GET form of enc_keys: only ``number`` and ``size`` (bits) (§5.2)."""
    return await enc_keys_response(_service(request), request.scope, slave_SAE_ID, number, size)


@router.post(
    "/{master_SAE_ID}/dec_keys", response_model=KeyContainer, response_model_exclude_none=True,
    responses=_ERRORS, summary="Get key with key IDs",
)
async def post_dec_keys(request: Request, master_SAE_ID: str, body: KeyIDs) -> Response:
    """The keys with these IDs, for the calling SAE, the slave they were made for (§5.3)."""
    return await dec_keys_response(_service(request), request.scope, master_SAE_ID, body)


async def dec_keys_response(
    service: KmeService, scope: Mapping[str, Any], master_SAE_ID: str, body: KeyIDs
) -> Response:
    """dec_keys for the SAE of this request's certificate, as a Key container response."""
    slave = service.authenticate_sae(scope)
    ids = [item.key_ID for item in body.key_IDs]
    return _container(await service.dec_keys(slave, master_SAE_ID, ids))


@router.get(
    "/{master_SAE_ID}/dec_keys", response_model=KeyContainer, response_model_exclude_none=True,
    responses=_ERRORS, summary="Get key with key IDs (GET form)",
)
async def get_dec_keys(
    request: Request, master_SAE_ID: str, key_ID: Annotated[uuid.UUID, Query()]
) -> Response:
    """The GET form of dec_keys: one ``key_ID``, no extensions (§5.3)."""
    service = _service(request)
    slave = service.authenticate_sae(request.scope)
    return _container(await service.dec_keys(slave, master_SAE_ID, [key_ID]))
