"""One small HTTP server for /metrics, /healthz and /readyz (no framework needed).

It speaks just enough HTTP/1.1 for Prometheus and kubelet probes: GET, one
request per connection, bounded request size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.observability.metrics import REGISTRY

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
_MAX_REQUEST_BYTES = 8192


class ObservabilityServer:
    def __init__(self, host: str, port: int, *, alive: Check, ready: Check) -> None:
        self.host = host
        self.port = port
        self._alive = alive
        self._ready = ready
        self._server: asyncio.Server | None = None

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> ObservabilityServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        log.info("http server listening", extra={"port": self.bound_port})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, path = self._parse(head)
            status, content_type, body = await self._route(method, path)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            status, content_type, body = 400, "text/plain", b"bad request\n"
        except ConnectionError:
            writer.close()
            return
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        reason[503] = "Service Unavailable"
        head_out = (
            f"HTTP/1.1 {status} {reason.get(status, 'OK')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        try:
            writer.write(head_out + (b"" if method == "HEAD" else body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    @staticmethod
    def _parse(head: bytes) -> tuple[str, str]:
        if len(head) > _MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        method, target, _version = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        return method, target.split("?", 1)[0]

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
        if path in ("/healthz", "/readyz"):
            ok, why = await (self._alive() if path == "/healthz" else self._ready())
            return (200 if ok else 503), "text/plain", f"{why}\n".encode()
        return 404, "text/plain", b"not found\n"
