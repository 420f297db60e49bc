"""The HTTP surface: the routes of vLLM's OpenAI-compatible server that memscore calls.

POST /v1/chat/completions, GET /v1/models, POST /tokenize and GET /health behave like vLLM's;
GET /stats is this server's own instrumentation. Request text is never logged: it is users'
personal data.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.model_server.backends import ModelBackend
from devstack.model_server.faults import FaultInjector
from devstack.model_server.protocol import (
    ApiError,
    check_context_length,
    check_model,
    parse_chat_request,
    parse_json_object,
    parse_tokenize_request,
)
from devstack.model_server.responses import ChatResponseEncoder, models_body, tokenize_body
from devstack.model_server.stats import ServerStats

_JSON = "application/json"
_INJECTED_TYPES = {500: "InternalServerError", 503: "ServiceUnavailableError"}
_Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """What the HTTP layer needs to know beyond the backend."""

    backend_name: str
    model_name: str
    model_root: str
    api_key: str | None = field(default=None, repr=False)
    max_logprobs: int = 20
    legacy_errors: bool = False


class _Gate:
    """ASGI middleware: outages (every route but /stats) and bearer auth (every /v1 route)."""

    def __init__(self, app: ASGIApp, settings: ServerSettings, faults: FaultInjector) -> None:
        self._app = app
        self._settings = settings
        self._faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        response: Response | None = None
        if path != "/stats" and self._faults.refuses_now():
            error = ApiError(
                503, "Service unavailable (simulated outage)", error_type="ServiceUnavailableError"
            )
            response = _error_response(error, self._settings)
        elif self._settings.api_key is not None and path.startswith("/v1"):
            headers = dict(scope["headers"])
            given = headers.get(b"authorization", b"")
            expected = f"Bearer {self._settings.api_key}".encode()
            if not hmac.compare_digest(given, expected):
                response = Response(b'{"error":"Unauthorized"}', status_code=401, media_type=_JSON)
        if response is None:
            await self._app(scope, receive, send)
        else:
            await response(scope, receive, send)


def _error_response(error: ApiError, settings: ServerSettings) -> Response:
    return Response(
        error.body(legacy=settings.legacy_errors), status_code=error.status, media_type=_JSON
    )


class _Routes:
    """The endpoints, sharing one backend, one response encoder and the counters."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: ServerSettings,
        faults: FaultInjector,
        stats: ServerStats,
    ) -> None:
        self._backend = backend
        self._settings = settings
        self._faults = faults
        self._stats = stats
        self._encoder = ChatResponseEncoder(backend.decode_token)
        self._created = int(time.time())

    def answering_errors(self, handler: _Handler) -> _Handler:
        """The handler, with an `ApiError` it raises answered in vLLM's error shape."""

        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as error:
                return _error_response(error, self._settings)

        return endpoint

    async def chat_completions(self, request: Request) -> Response:
        with self._stats.chat_request():
            try:
                return await self._chat_completion(request)
            except Exception:
                self._stats.requests_failed += 1
                raise

    async def _chat_completion(self, request: Request) -> Response:
        status = self._faults.draw_error_status()
        if status is not None:
            raise ApiError(status, "Injected fault", error_type=_INJECTED_TYPES[status])
        body = parse_json_object(await request.body())
        chat = parse_chat_request(body, max_logprobs=self._settings.max_logprobs)
        check_model(chat.model, self._settings.model_name)
        token_ids = await self._backend.render_chat(chat.prompt)
        check_context_length(chat, len(token_ids), self._backend.max_model_len)
        spike = self._faults.draw_latency_spike()
        if spike > 0:
            await asyncio.sleep(spike)
        top_k = chat.prompt_logprobs or 0
        scores = await self._backend.score(token_ids, top_k=top_k, max_tokens=chat.max_tokens)
        answer = self._encoder.chat_completion(
            model=self._settings.model_name,
            content=self._backend.decode(scores.completion_ids),
            scores=scores,
            token_ids=token_ids,
            request=chat,
        )
        self._stats.record_served(len(token_ids), len(scores.completion_ids))
        return Response(answer, media_type=_JSON)

    async def tokenize(self, request: Request) -> Response:
        parsed = parse_tokenize_request(parse_json_object(await request.body()))
        check_model(parsed.model, self._settings.model_name)
        if isinstance(parsed.prompt, str):
            add_special_tokens = parsed.add_special_tokens
            ids = await self._backend.encode_text(
                parsed.prompt, add_special_tokens=add_special_tokens
            )
        else:
            ids = await self._backend.render_chat(parsed.prompt)
        return Response(tokenize_body(ids, self._backend.max_model_len), media_type=_JSON)

    async def models(self, request: Request) -> Response:
        settings, max_model_len = self._settings, self._backend.max_model_len
        body = models_body(settings.model_name, settings.model_root, max_model_len, self._created)
        return Response(body, media_type=_JSON)

    async def health(self, request: Request) -> Response:
        return Response(status_code=200)

    async def server_stats(self, request: Request) -> Response:
        snapshot = {
            "backend": self._settings.backend_name,
            **self._stats.snapshot(),
            "capacity_tokens_per_second": None,  # unbounded unless the backend says otherwise
            **self._backend.load_stats(),
            "errors_injected": self._faults.errors_injected,
            "latency_spikes": self._faults.latency_spikes,
            "outage_refusals": self._faults.outage_refusals,
        }
        return Response(json.dumps(snapshot).encode(), media_type=_JSON)


def build_app(
    backend: ModelBackend, settings: ServerSettings, faults: FaultInjector, stats: ServerStats
) -> Starlette:
    routes = _Routes(backend, settings, faults, stats)
    app = Starlette(
        routes=[
            Route(
                "/v1/chat/completions",
                routes.answering_errors(routes.chat_completions),
                methods=["POST"],
            ),
            Route("/v1/models", routes.answering_errors(routes.models), methods=["GET"]),
            Route("/tokenize", routes.answering_errors(routes.tokenize), methods=["POST"]),
            Route("/health", routes.health, methods=["GET"]),
            Route("/stats", routes.server_stats, methods=["GET"]),
        ]
    )
    app.add_middleware(_Gate, settings=settings, faults=faults)
    return app
