"""The vLLM client: least-loaded endpoint choice, retries, breakers, error translation.

httpx is used only here. Library errors become worker.errors at this boundary:
connection errors, timeouts, 429, 5xx, auth failures and 404 (the model is not served
there yet, or the URL is wrong) are InferenceUnavailable (retried; never a reason to
DLQ an event); a context-length refusal is ContextLengthError and other 4xx
ModelRequestRejected (the event is bad). Error messages name an endpoint by host and
port and repeat nothing of a server's error body but its status and error type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import msgspec

from worker.errors import (
    ContextLengthError,
    InferenceResponseError,
    InferenceUnavailable,
    ModelRequestRejected,
)
from worker.inference.endpoint import Endpoint, endpoints
from worker.inference.error_answer import ErrorAnswer
from worker.inference.limiter import InflightLimiter
from worker.inference.response import AmbiguousPromptTokens, parse_prompt_logprobs
from worker.observability import metrics
from worker.retry import RetryPolicy
from worker.scoring.tokens import TokenStream
from worker.settings import Settings

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 425, 429})
_CHAT_PATH = "/v1/chat/completions"
_DEFAULT_RETRY = RetryPolicy(0.5, 30.0, max_attempts=6)  # the settings' defaults


@dataclass(frozen=True)
class ClientConfig:
    base_urls: Sequence[str]
    api_key: str | None = None
    timeout_seconds: float = 600.0
    connect_timeout_seconds: float = 10.0
    #: How one request is retried: the per-request level of the two (worker.retry).
    retry: RetryPolicy = _DEFAULT_RETRY
    breaker_failure_threshold: int = 5
    breaker_reset_seconds: float = 15.0
    return_token_ids: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientConfig:
        return cls(
            base_urls=settings.vllm_urls,
            api_key=settings.api_key(),
            timeout_seconds=settings.vllm_timeout_seconds,
            connect_timeout_seconds=settings.vllm_connect_timeout_seconds,
            retry=RetryPolicy.per_request(settings),
            breaker_failure_threshold=settings.breaker_failure_threshold,
            breaker_reset_seconds=settings.breaker_reset_seconds,
            return_token_ids=settings.vllm_return_token_ids,
        )


@dataclass(frozen=True)
class PromptScores:
    """What one scoring request returned: the token stream and what it cost."""

    tokens: TokenStream
    prompt_tokens: int
    endpoint: str


class InferenceClient:
    """Sends scoring requests to a pool of vLLM servers. Use as an async context manager."""

    def __init__(self, config: ClientConfig, limiter: InflightLimiter) -> None:
        if not config.base_urls:
            raise ValueError("at least one model server URL is required")
        self.config = config
        self.limiter = limiter
        self._endpoints = endpoints(
            config.base_urls, config.breaker_failure_threshold, config.breaker_reset_seconds
        )
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        for endpoint in self._endpoints:
            metrics.CIRCUIT_STATE.labels("vllm", endpoint.name).set(0)

    async def __aenter__(self) -> InferenceClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    def available(self) -> bool:
        """Is any endpoint's breaker letting calls through? (For pausing intake.)"""
        now = time.monotonic()
        return any(e.breaker.allows(now) for e in self._endpoints)

    def _choose(self) -> Endpoint | None:
        now = time.monotonic()
        usable = [e for e in self._endpoints if e.breaker.allows(now)]
        if not usable:
            return None
        return min(usable, key=lambda e: (e.inflight, e.served))

    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores:
        """Score one prompt, retrying what retrying can fix, as the retry policy allows."""
        payload: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": 1,
            "prompt_logprobs": 0,
            "stream": False,
        }
        if self.config.return_token_ids:
            payload["return_token_ids"] = True
        body = msgspec.json.encode(payload)
        policy = self.config.retry
        failures = 0
        while True:
            endpoint: Endpoint | None = None
            try:
                async with self.limiter.slot(estimated_tokens):
                    # Chosen once admitted, not before: every request queued in the
                    # limiter would otherwise go to the endpoint least loaded back then.
                    endpoint = self._choose()
                    if endpoint is not None:
                        return await self._send(endpoint, body, model, messages)
            except (InferenceUnavailable, InferenceResponseError) as exc:
                failures += 1
                if policy.gives_up_after(failures):
                    raise
                log.warning(
                    "model request failed, will retry",
                    extra={
                        "endpoint": endpoint.name if endpoint else "",
                        "error_class": exc.error_class,
                        "attempt": failures,
                    },
                )
                wait = policy.delay(failures)
            else:
                # Every circuit is open: wait for the first half-open trial, not less
                # than the backoff (a trial already taken by another request reads as
                # 0 s to wait, and must not turn this loop into a spin).
                failures += 1
                if policy.gives_up_after(failures):
                    raise InferenceUnavailable("every model server's circuit is open")
                until_trial = min(
                    e.breaker.seconds_until_trial(time.monotonic()) for e in self._endpoints
                )
                wait = max(min(until_trial, policy.max_seconds), policy.delay(failures))
            metrics.RETRIES.labels("vllm").inc()
            await asyncio.sleep(wait)

    async def _send(
        self, endpoint: Endpoint, body: bytes, model: str, messages: list[dict[str, str]]
    ) -> PromptScores:
        now = time.monotonic()
        endpoint.breaker.on_start(now)
        endpoint.inflight += 1
        outcome = "error"
        started = time.perf_counter()
        try:
            result = await self._post(endpoint, body, model, messages)
            outcome = "ok"
            endpoint.breaker.on_success()
            endpoint.served += 1
            return result
        except (ContextLengthError, ModelRequestRejected):
            outcome = "rejected"
            endpoint.breaker.on_success()  # the server is healthy; the input is not
            raise
        except (InferenceUnavailable, InferenceResponseError):
            endpoint.breaker.on_failure(time.monotonic())
            raise
        except BaseException:
            # Cancelled (a sibling ablation failed, shutdown): no verdict on the server,
            # but a half-open trial must not stay taken, or the endpoint is never retried.
            endpoint.breaker.on_abandon()
            raise
        finally:
            endpoint.inflight -= 1
            metrics.VLLM_REQUEST_DURATION.labels(endpoint.name, outcome).observe(
                time.perf_counter() - started
            )
            metrics.CIRCUIT_STATE.labels("vllm", endpoint.name).set(
                int(endpoint.breaker.state(time.monotonic()))
            )

    async def _post(
        self, endpoint: Endpoint, body: bytes, model: str, messages: list[dict[str, str]]
    ) -> PromptScores:
        url = f"{endpoint.base_url}{_CHAT_PATH}"
        headers = {"Content-Type": "application/json"}
        try:
            async with self._http.stream(
                "POST", url, content=body, headers=headers, auth=endpoint.auth
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for_status(response, endpoint, _CHAT_PATH)
                # Read into bytes of our own, not response.content: an httpx Response sits
                # in a reference cycle, so the body it held (megabytes) would live on until
                # the cyclic GC came round, and a conversation's bodies would pile up.
                content = b"".join([part async for part in response.aiter_bytes()])
        except httpx.RequestError as exc:  # transport, or an undecodable body
            raise InferenceUnavailable(
                f"{type(exc).__name__} talking to {endpoint.name}", endpoint.name
            ) from None
        try:
            tokens = parse_prompt_logprobs(content)
        except AmbiguousPromptTokens:
            ids = await self._tokenize(endpoint, model, messages)
            tokens = parse_prompt_logprobs(content, prompt_token_ids=ids)
        return PromptScores(tokens=tokens, prompt_tokens=len(tokens), endpoint=endpoint.name)

    async def _tokenize(
        self, endpoint: Endpoint, model: str, messages: list[dict[str, str]]
    ) -> list[int]:
        try:
            response = await self._http.post(
                f"{endpoint.base_url}/tokenize",
                json={"model": model, "messages": messages},
                auth=endpoint.auth,
            )
        except httpx.RequestError as exc:  # transport, or an undecodable body
            raise InferenceUnavailable(
                f"{type(exc).__name__} talking to {endpoint.name}", endpoint.name
            ) from None
        self._raise_for_status(response, endpoint, "/tokenize")
        try:
            tokens = response.json()["tokens"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise InferenceResponseError("unreadable /tokenize response") from None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise InferenceResponseError("unreadable /tokenize response")
        return tokens

    @staticmethod
    def _raise_for_status(response: httpx.Response, endpoint: Endpoint, path: str) -> None:
        """Translate an error answer. Nothing of its body is repeated but what ErrorAnswer
        vouches for: a gateway may echo the request, users' text, in its error body."""
        status = response.status_code
        if status < 400:
            return
        answer = ErrorAnswer.parse(status, response.content)
        name = endpoint.name
        # Every InferenceUnavailable below counts against the endpoint's breaker (_send).
        if status in _RETRYABLE_STATUS or status >= 500:
            raise InferenceUnavailable(f"{name} answered {answer.describe()}", name)
        if status in (401, 403):
            # A configuration problem, not a bad event: pause and alert, never DLQ.
            raise InferenceUnavailable(f"{name} refused our credentials ({status})", name)
        if answer.model_not_found:
            # Mid-rollout: this server does not serve the model yet (or any more). The
            # event is fine: wait, never DLQ. It counts against the breaker although the
            # process is healthy, so that a pool with one server still on the old model
            # sends the work to the others instead of a third of it failing for ever.
            raise InferenceUnavailable(
                f"{name} does not serve the requested model ({answer.describe()})", name
            )
        if status == 404:
            # No such path: a base URL missing a prefix, a gateway not routing it. A
            # configuration problem like 401, not a bad event: wait and alert, never DLQ.
            raise InferenceUnavailable(f"{name} answered 404 for {path}: check its URL", name)
        if answer.context_length is not None:
            raise ContextLengthError(
                "the model refused the conversation as longer than its context: "
                + answer.context_length.describe()
            )
        raise ModelRequestRejected(f"{name} answered {answer.describe()}", status)
