"""Running a node's ASGI app under uvicorn with mutual TLS, in a thread or in the foreground.

:class:`NodeServer` starts uvicorn on 127.0.0.1 (by default) with the TLS 1.3, client-
certificate-required context of :mod:`qkdnet.api.tls` and the protocol class that puts the
peer identity into the ASGI scope. Tests and the in-process tools use ``start()``/``stop()``
(a background thread); a node process uses ``run()``, which returns after SIGINT/SIGTERM once
in-flight requests have finished (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from qkdnet.api.tls import http_protocol_class, server_ssl_context
from qkdnet.errors import ParameterError

__all__ = ["NodeServer", "free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (for tests and `qkdnet serve`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NodeServer:
    """uvicorn serving ``app`` over mutual TLS on ``host:port`` (certificate paths are PEM)."""

    app: Any
    cert: str | os.PathLike[str]
    key: str | os.PathLike[str]
    ca: str | os.PathLike[str]
    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "warning"
    #: uvicorn protocol class; None = the fastest available (:func:`http_protocol_class`).
    http: type | None = None

    def __post_init__(self) -> None:
        if self.port == 0:
            self.port = free_port(self.host)
        if not 1 <= self.port <= 65535:
            raise ParameterError("port", f"must be in 1..65535, got {self.port}")
        ctx = server_ssl_context(self.cert, self.key, self.ca)
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            http=self.http or http_protocol_class(),
            ssl_context_factory=lambda _config, _default: ctx,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=10,
            # Many SAEs keep connections open; the default 5 s keep-alive is too eager.
            timeout_keep_alive=30,
            backlog=1024,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``https://127.0.0.1:8443``."""
        return f"https://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> NodeServer:
        """Serve in a background thread; returns once the socket accepts connections."""
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn-{self.port}",
                                        daemon=True)
        # uvicorn installs signal handlers only in the main thread; in a thread it skips them.
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish in-flight requests, close the socket and join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM (graceful)."""
        self._server.run()

    def __enter__(self) -> NodeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
