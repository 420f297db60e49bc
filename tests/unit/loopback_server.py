"""A real HTTP server on 127.0.0.1 whose answers a test scripts, request by request.

Each path has a queue of ``Reply`` behaviours (status and body, a delay, a gate to hold
the answer until the test releases it, a connection closed mid-body, a reset) and an
optional fallback for when the queue is empty. Every request is recorded (method,
path, headers, JSON body) before it is answered, so a test can await its arrival.
Test code, not a model server: it knows nothing of vLLM beyond what a test scripts.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Hold the answer until the test sets this event (or the server closes).
    gate: threading.Event | None = None
    #: Send only this many body bytes (Content-Length announces them all), then close.
    cut_after: int | None = None
    #: Reset the connection (RST) instead of answering.
    reset: bool = False

    @classmethod
    def json(cls, obj: object, status: int = 200, **options: Any) -> Reply:
        headers = {"Content-Type": "application/json"}
        return cls(status=status, body=json.dumps(obj).encode(), headers=headers, **options)

    @classmethod
    def error(cls, status: int, message: str, **options: Any) -> Reply:
        """An error body in vLLM's shape."""
        body = {"object": "error", "message": message, "type": "Error", "code": status}
        return cls.json(body, status=status, **options)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects of a real server
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        received = ReceivedRequest(
            method=self.command,
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        reply = self.server.owner._record(received)
        self._answer(reply)

    do_GET = do_POST

    def _answer(self, reply: Reply) -> None:
        owner = self.server.owner
        if reply.delay:
            owner._closing.wait(reply.delay)
        if reply.gate is not None:
            while not (reply.gate.is_set() or owner._closing.is_set()):
                reply.gate.wait(0.05)
        if reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.cut_after is None:
            self.wfile.write(reply.body)
            return
        self.wfile.write(reply.body[: reply.cut_after])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read the recorded requests instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (cancelled, timed out) breaks the pipe we write to;
        # that is what some tests do on purpose.
        pass


class LoopbackServer:
    """Use as a context manager; ``url`` is its base URL."""

    NOT_SCRIPTED = 418  # a 4xx the client does not retry: an unscripted call fails fast

    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._fallbacks: dict[str, Reply] = {}
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.host = f"{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def script(self, path: str, *replies: Reply) -> None:
        """Queue answers for the next requests to ``path``, in order."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)

    def always(self, path: str, reply: Reply) -> None:
        """Answer ``path`` with ``reply`` whenever its queue is empty."""
        with self._lock:
            self._fallbacks[path] = reply

    def received(self, path: str) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    async def wait_for_requests(self, count: int, within: float = 5.0) -> None:
        """Return once ``count`` requests (any path) have arrived, or raise TimeoutError."""
        await asyncio.to_thread(self._wait_for, count, within)

    def _wait_for(self, count: int, within: float) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, within):
                raise TimeoutError(f"{len(self.requests)} requests arrived, not {count}")

    def _record(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            queue = self._scripts.get(request.path)
            if queue:
                return queue.popleft()
            fallback = self._fallbacks.get(request.path)
        if fallback is not None:
            return fallback
        message = f"loopback server: nothing scripted for {request.method} {request.path}"
        return Reply.error(self.NOT_SCRIPTED, message)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
