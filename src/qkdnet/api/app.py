"""The FastAPI application of one node: ETSI GS QKD 014, Cisco SKIP, and the error mapping.

One handler maps qkdnet's exception tree to HTTP (ETSI GS QKD 014 V1.1.1 §5, Table 2):

==============================  ====  ==================================================
error                           code  body ``{"message": ...}``
==============================  ====  ==================================================
malformed request, ParameterError 400  the standard's own message where it has one
KeyNotFound / KeyAlreadyConsumed 400  ``one or more keys specified are not found on KME``
Unauthorized                     401  why (no certificate, not this KME's SAE, not the pair's)
KeyExhausted                     503  says that the key pool has too little key
RelayError, RoutingError, StoreError, anything else 503  (never a stack trace, never a 500)
==============================  ====  ==================================================

FastAPI's own 422 for a malformed request becomes 400 with the same Error body, and the
published OpenAPI document says 400, not 422.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qkdnet.api import etsi014, skip
from qkdnet.api.service import (
    MSG_EXTENSION_MANDATORY_UNMET,
    MSG_EXTENSION_MANDATORY_UNSUPPORTED,
    MSG_KEYS_NOT_FOUND,
    MSG_SIZE_MULTIPLE_OF_8,
    KmeService,
)
from qkdnet.api.transport import KX_PATH, KxEndpoint
from qkdnet.errors import (
    KeyExhausted,
    KeyNotFound,
    ParameterError,
    QkdnetError,
    Unauthorized,
)

__all__ = ["FastPath", "create_app", "error_response"]

log = logging.getLogger("qkdnet.api")
_STANDARD_MESSAGES = {
    MSG_SIZE_MULTIPLE_OF_8,
    MSG_EXTENSION_MANDATORY_UNSUPPORTED,
    MSG_EXTENSION_MANDATORY_UNMET,
}


def error_response(exc: BaseException) -> JSONResponse:
    """The HTTP answer (code and Error body) for an exception raised while serving."""
    if isinstance(exc, ParameterError):
        text = str(exc)
        bare = text.removeprefix(f"{exc.field}: ")
        message = bare if bare in _STANDARD_MESSAGES else text
        return JSONResponse({"message": message}, status_code=400)
    if isinstance(exc, KeyNotFound):
        return JSONResponse({"message": MSG_KEYS_NOT_FOUND}, status_code=400)
    if isinstance(exc, Unauthorized):
        return JSONResponse({"message": f"unauthorized: {exc}"}, status_code=401)
    if isinstance(exc, KeyExhausted):
        detail = str(exc) or "no key available"
        return JSONResponse(
            {"message": f"not enough key material in the key pool: {detail}"}, status_code=503
        )
    if isinstance(exc, QkdnetError):
        return JSONResponse({"message": f"{type(exc).__name__}: {exc}"}, status_code=503)
    log.exception("internal error while serving a request", exc_info=exc)
    return JSONResponse({"message": "internal KME error"}, status_code=503)


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    details: list[dict[str, Any]] = []
    message = ""
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        details.append({"loc": loc, "msg": str(err.get("msg", "")), "type": err.get("type", "")})
        if loc and loc[-1] == "size" and err.get("type") == "multiple_of":
            message = MSG_SIZE_MULTIPLE_OF_8
    if not message:
        first = details[0] if details else {"loc": [], "msg": "malformed request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        message = f"malformed request: {where}: {first['msg']}"
    return message, details


_ENC_PATH = re.compile(r"/api/v1/keys/([^/]+)/enc_keys")
_DEC_PATH = re.compile(r"/api/v1/keys/([^/]+)/dec_keys")


class FastPath:
    """ASGI wrapper that serves well-formed ``POST enc_keys``/``dec_keys`` (the hot path,
    thousands per second) without FastAPI's routing and dependency machinery, with the same
    models, checks and answers. Anything else — other routes, other content types, an
    empty or malformed body — goes to the FastAPI app unchanged (the body replayed), so
    every error is FastAPI's own 400 and the published document stays the one truth.
    """

    def __init__(self, app: FastAPI, service: KmeService, kx: KxEndpoint | None = None) -> None:
        self.app = app
        self.service = service
        self.kx = kx

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["query_string"]:
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.kx is not None and path == KX_PATH:
            # Node-to-node relay messages: as many as the relayed keys, hop by hop.
            raw = await _read_body(receive)
            try:
                response: Any = await self.kx.answer(scope, raw)
            except Exception as exc:  # noqa: BLE001 — the same mapping as FastAPI's handlers
                response = error_response(exc)
            return await response(scope, receive, send)
        enc = _ENC_PATH.fullmatch(path)
        dec = None if enc else _DEC_PATH.fullmatch(path)
        if not (enc or dec) or not _is_json(scope):
            return await self.app(scope, receive, send)
        body = await _read_body(receive)
        try:
            if enc:
                req = etsi014.KeyRequest.model_validate_json(body)
                parsed: Any = req
            else:
                parsed = etsi014.KeyIDs.model_validate_json(body)
        except ValueError:  # pydantic's ValidationError: let FastAPI say it, word for word
            return await self.app(scope, _replay(body), send)
        try:
            if enc:
                response = await etsi014.enc_keys_response(
                    self.service, scope, enc.group(1), req.number, req.size,
                    req.additional_slave_SAE_IDs or (), req.extension_mandatory or (),
                )
            else:
                assert dec is not None
                response = await etsi014.dec_keys_response(
                    self.service, scope, dec.group(1), parsed
                )
        except Exception as exc:  # noqa: BLE001 — the same mapping as FastAPI's handlers
            response = error_response(exc)
        await response(scope, receive, send)


def _is_json(scope: Any) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"application/json")
    return False


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes) -> Any:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def create_app(service: KmeService, extra_routers: tuple[Any, ...] = ()) -> FastAPI:
    """The ASGI application of one node's KME (``service``), plus optional extra routers
    (the node-to-node key relay endpoint of :mod:`qkdnet.api.transport`)."""
    app = FastAPI(
        title=f"qkdnet KME {service.node_id}",
        version="1.1.1",
        description="ETSI GS QKD 014 V1.1.1 key delivery and Cisco SKIP (draft-cisco-skip-02).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.kme = service
    app.include_router(etsi014.router)
    app.include_router(skip.router)
    for router in extra_routers:
        app.include_router(router)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc)
        return JSONResponse({"message": message, "details": details}, status_code=400)

    @app.exception_handler(QkdnetError)
    async def _on_qkdnet(request: Request, exc: QkdnetError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; RFC 9110 §15.5.6
            # wants every method the resource supports (enc_keys/dec_keys: GET and POST).
            allowed = {
                method.upper()
                for pattern, methods in _path_methods(app)
                if pattern.fullmatch(request.url.path)
                for method in methods
            }
            if allowed:
                headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
                headers["Allow"] = ", ".join(sorted(allowed))
        return JSONResponse({"message": str(exc.detail)}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(Exception)
    async def _on_other(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc)

    app.openapi = _openapi_without_422(app)  # type: ignore[method-assign]
    return app


def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], list[str]]]:
    """(path regex, methods) for every path of the published document (cached on the app)."""
    cached: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "path_methods", None
    )
    if cached is None:
        cached = [
            (re.compile(re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path))), list(item))
            for path, item in app.openapi()["paths"].items()
        ]
        app.state.path_methods = cached
    return cached


def _openapi_without_422(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """OpenAPI generator whose documents say 400 (the standard's code) instead of 422."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for path_item in doc.get("paths", {}).values():
            for operation in path_item.values():
                operation.get("responses", {}).pop("422", None)
        schemas = doc.get("components", {}).get("schemas", {})
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.pop("_SkipError", None)
        doc = _collapse_nullable(doc)
        _rename_ref(doc, "#/components/schemas/_SkipError", "#/components/schemas/Error")
        app.openapi_schema = doc
        return doc

    return openapi


def _collapse_nullable(node: Any) -> Any:
    """``anyOf: [X, {type: null}]`` → ``X``: an optional field is simply absent in the
    standard's formats (ETSI GS QKD 014 §6), never ``null``."""
    if isinstance(node, list):
        return [_collapse_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _collapse_nullable(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and len(options) == 2 and {"type": "null"} in options:
        other = next(option for option in options if option != {"type": "null"})
        rest = {key: value for key, value in node.items() if key not in ("anyOf", "default")}
        if "$ref" in other:
            return {**other} if not rest or set(rest) <= {"title"} else {"allOf": [other], **rest}
        return {**other, **rest}
    return node


def _rename_ref(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and value == old:
                node[key] = new
            else:
                _rename_ref(value, old, new)
    elif isinstance(node, list):
        for item in node:
            _rename_ref(item, old, new)
