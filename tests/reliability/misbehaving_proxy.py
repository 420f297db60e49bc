"""A real HTTP server that forwards to a model server and corrupts some of its answers.

It runs its own event loop in a thread, so a test that blocks (waiting for a worker
process to exit) never stalls it. `Fault` names what it does to one answer; a
`FaultPlan` decides, per request, which fault (if any) to apply. Only the scoring
route (POST /v1/chat/completions) is ever corrupted; the rest is passed through.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx

from devstack.ports import free_port

SCORING_PATH = "/v1/chat/completions"


class Fault(enum.Enum):
    #: The status line, headers and half the body, then a TCP reset.
    RESET_MID_BODY = "reset_mid_body"
    #: A complete 200 answer whose JSON body is cut in half.
    TRUNCATED_JSON = "truncated_json"
    #: A 200 answer whose prompt_logprobs lacks the prompt's last tokens.
    SHORT_PROMPT_LOGPROBS = "short_prompt_logprobs"
    #: 429 Too Many Requests, as a loaded vLLM behind a gateway answers.
    TOO_MANY_REQUESTS = "too_many_requests"
    #: 503 Service Unavailable, as vLLM answers while its engine is overloaded.
    SERVICE_UNAVAILABLE = "service_unavailable"
    #: 400 with vLLM's context-length refusal (its 0.10+ nested error shape).
    CONTEXT_LENGTH = "context_length"


#: (request body, how many times that same body came before) -> the fault to apply to
#: the answer, or None to pass it through.
FaultPlan = Callable[[bytes, int], Fault | None]


class MisbehavingProxy:
    """`with MisbehavingProxy(upstream, plan) as proxy:` … `proxy.base_url`."""

    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.upstream = upstream.rstrip("/")
        self.plan = plan
        self.port = free_port("127.0.0.1")
        self.faults: Counter[Fault] = Counter()
        self.requests = 0
        self._seen: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> MisbehavingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._http = httpx.AsyncClient(base_url=self.upstream, timeout=60)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        assert self._server is not None
        assert self._http is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout=2)
        await self._http.aclose()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one_exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one_exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection is to be closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        forwarded = {k: v for k, v in headers.items() if k in ("authorization", "content-type")}
        assert self._http is not None
        upstream = await self._http.request(method, path, content=body, headers=forwarded)
        status, answer = upstream.status_code, upstream.content
        fault = None
        if method == "POST" and path == SCORING_PATH:
            self.requests += 1
            digest = hashlib.sha256(body).hexdigest()
            fault = self.plan(body, self._seen[digest])
            self._seen[digest] += 1
        if fault is not None:
            self.faults[fault] += 1
        if fault is Fault.RESET_MID_BODY:
            writer.write(_head(status, len(answer)) + answer[: len(answer) // 2])
            await writer.drain()
            transport: Any = writer.transport
            transport.abort()  # RST, not a polite FIN
            return False
        if fault is Fault.TRUNCATED_JSON:
            answer = answer[: len(answer) // 2]
        elif fault is Fault.SHORT_PROMPT_LOGPROBS:
            answer = _drop_last_positions(answer, 3)
        elif fault is Fault.TOO_MANY_REQUESTS:
            status = 429
            answer = json.dumps(
                {"object": "error", "message": "Too many requests", "type": "RateLimitError"}
            ).encode()
        elif fault is Fault.SERVICE_UNAVAILABLE:
            status = 503
            answer = json.dumps(
                {"error": {"message": "Service Unavailable", "type": "ServiceUnavailableError"}}
            ).encode()
        elif fault is Fault.CONTEXT_LENGTH:
            status = 400
            message = (
                "This model's maximum context length is 8192 tokens. However, you requested "
                "9100 tokens (9099 in the messages, 1 in the completion). Please reduce the "
                "length of the messages or completion."
            )
            answer = json.dumps(
                {"error": {"message": message, "type": "BadRequestError", "code": 400}}
            ).encode()
        writer.write(_head(status, len(answer)) + answer)
        await writer.drain()
        return True


def _head(status: int, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _drop_last_positions(answer: bytes, count: int) -> bytes:
    body = json.loads(answer)
    body["prompt_logprobs"] = body["prompt_logprobs"][:-count]
    return json.dumps(body).encode()
