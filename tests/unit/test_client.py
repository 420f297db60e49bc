"""InferenceClient over real HTTP: request shape, retries, error translation, pool, breakers.

Every test talks to LoopbackServer on 127.0.0.1; httpx is never mocked.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit import vllm_shapes
from tests.unit.loopback_server import LoopbackServer, Reply, closed_port_url
from worker.commands.score import client_config
from worker.errors import (
    ContextLengthError,
    InferenceResponseError,
    InferenceUnavailable,
    ModelRequestRejected,
)
from worker.inference.client import ClientConfig, InferenceClient, PromptScores
from worker.inference.limiter import InflightLimiter
from worker.observability.metrics import REGISTRY
from worker.retry import RetryPolicy
from worker.settings import load_settings

CHAT = "/v1/chat/completions"
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "[memory] The user's dog is named Biscuit."},
    {"role": "assistant", "content": "Your dog is called Biscuit."},
]
TEXTS = vllm_shapes.tokenize(vllm_shapes.chatml([(m["role"], m["content"]) for m in MESSAGES]))
OK = Reply(body=vllm_shapes.body(TEXTS), headers={"Content-Type": "application/json"})


def body_with(**changes: Any) -> bytes:
    """The OK body with top-level fields replaced."""
    return json.dumps({**json.loads(OK.body), **changes}).encode()


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.fixture
def other_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def client_for(
    *urls: str,
    limiter: InflightLimiter | None = None,
    max_attempts: int | None = 3,
    retry_base_seconds: float = 0.01,
    retry_max_seconds: float = 0.02,
    **options: Any,
) -> InferenceClient:
    settings: dict[str, Any] = {"timeout_seconds": 5.0, "connect_timeout_seconds": 1.0, **options}
    retry = RetryPolicy(retry_base_seconds, retry_max_seconds, max_attempts)
    config = ClientConfig(base_urls=list(urls), retry=retry, **settings)
    return InferenceClient(config, limiter or InflightLimiter(16, 1_000_000))


async def score(client: InferenceClient) -> PromptScores:
    return await client.prompt_logprobs(model="m", messages=MESSAGES, estimated_tokens=100)


def retries() -> float:
    return REGISTRY.get_sample_value("memscore_retries_total", {"dependency": "vllm"}) or 0.0


# --- the request ----------------------------------------------------------------------


async def test_request_is_a_non_streaming_chat_completion_asking_for_prompt_logprobs(
    server: LoopbackServer,
) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url) as client:
        await score(client)
    assert [(r.method, r.path, r.json()) for r in server.requests] == [
        (
            "POST",
            CHAT,
            {
                "model": "m",
                "messages": MESSAGES,
                "max_tokens": 1,
                "prompt_logprobs": 0,
                "stream": False,
                "return_token_ids": True,
            },
        )
    ]


async def test_body_is_sent_as_json(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url) as client:
        await score(client)
    assert server.requests[0].headers["content-type"] == "application/json"


async def test_return_token_ids_is_left_out_when_disabled(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url, return_token_ids=False) as client:
        await score(client)
    assert "return_token_ids" not in server.requests[0].json()


async def test_api_key_is_sent_as_a_bearer_token(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url, api_key="s3cret-key") as client:
        await score(client)
    assert server.requests[0].headers["authorization"] == "Bearer s3cret-key"


async def test_no_authorization_header_without_an_api_key(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url) as client:
        await score(client)
    assert "authorization" not in server.requests[0].headers


async def test_base_url_with_a_trailing_slash_is_joined_cleanly(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url + "/") as client:
        await score(client)
    assert server.requests[0].path == CHAT


async def test_answer_becomes_the_prompt_token_stream(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.tokens.texts[1:], result.prompt_tokens, result.endpoint) == (
        TEXTS[1:],
        len(TEXTS),
        server.host,
    )


# --- retries ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429, 408])
async def test_retryable_status_is_retried_until_success(
    server: LoopbackServer, status: int
) -> None:
    server.script(CHAT, Reply.error(status, "busy"), OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


async def test_each_retry_is_counted_in_the_retries_metric(server: LoopbackServer) -> None:
    server.script(CHAT, Reply.error(503, "busy"), Reply.error(500, "oops"), OK)
    before = retries()
    async with client_for(server.url) as client:
        await score(client)
    assert retries() - before == 2


async def test_retryable_status_that_persists_is_unavailable_after_max_attempts(
    server: LoopbackServer,
) -> None:
    server.always(CHAT, Reply.error(503, "overloaded"))
    async with client_for(server.url, max_attempts=4) as client:
        with pytest.raises(InferenceUnavailable, match="503"):
            await score(client)
    assert len(server.requests) == 4


async def test_connection_refused_is_unavailable_after_max_attempts() -> None:
    before = retries()
    async with client_for(closed_port_url(), max_attempts=3) as client:
        with pytest.raises(InferenceUnavailable) as info:
            await score(client)
    assert (info.value.dependency, retries() - before) == ("vllm", 2)


async def test_a_request_retried_past_a_thousand_failures_never_overflows() -> None:
    # The old backoff computed base * 2**attempt before capping: OverflowError at 1025.
    async with client_for(
        closed_port_url(),
        max_attempts=1_100,
        retry_base_seconds=1e-9,
        retry_max_seconds=1e-9,
        breaker_reset_seconds=60.0,
    ) as client:
        with pytest.raises(InferenceUnavailable, match="circuit is open"):
            await score(client)


async def test_while_every_circuit_is_open_the_client_waits_for_the_trial(
    server: LoopbackServer,
) -> None:
    # Attempts: the 503 that opens the circuit, a wait for its trial, the trial.
    server.script(CHAT, Reply.error(503, "down"), OK)
    async with client_for(
        server.url,
        max_attempts=3,
        retry_max_seconds=1.0,
        breaker_failure_threshold=1,
        breaker_reset_seconds=0.2,
    ) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


def test_the_client_retries_each_request_with_the_per_request_policy() -> None:
    settings = load_settings(retry_base_seconds=0.2, retry_max_seconds=7, vllm_max_attempts=4)
    assert ClientConfig.from_settings(settings).retry == RetryPolicy.per_request(settings)


def test_the_score_command_retries_briefly() -> None:
    settings = load_settings(retry_base_seconds=0.2, retry_max_seconds=60, vllm_max_attempts=9)
    assert client_config(settings, ["http://vllm:8000"]).retry == RetryPolicy(0.2, 5.0, 3)


async def test_connection_reset_is_retried(server: LoopbackServer) -> None:
    server.script(CHAT, Reply(reset=True), OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


async def test_timeout_is_retried(server: LoopbackServer) -> None:
    server.script(CHAT, Reply(delay=10.0), OK)
    async with client_for(server.url, timeout_seconds=0.2) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


async def test_connection_closed_mid_body_is_retried(server: LoopbackServer) -> None:
    server.script(CHAT, Reply(body=OK.body, cut_after=len(OK.body) // 2), OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


async def test_connection_closed_mid_body_every_time_is_unavailable(
    server: LoopbackServer,
) -> None:
    # A transport failure, not a body to distrust: the event is never dead-lettered for it.
    server.always(CHAT, Reply(body=OK.body, cut_after=100))
    async with client_for(server.url) as client:
        with pytest.raises(InferenceUnavailable):
            await score(client)
    assert len(server.requests) == 3


async def test_body_that_cannot_be_decompressed_is_retried(server: LoopbackServer) -> None:
    garbage = Reply(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    server.script(CHAT, garbage, OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


BAD_BODIES = {
    "truncated-json": OK.body[: len(OK.body) // 2],
    "html-from-a-proxy": b"<html><body>502 Bad Gateway</body></html>",
    "fewer-positions-than-prompt-tokens": body_with(
        prompt_logprobs=json.loads(OK.body)["prompt_logprobs"][:-1]
    ),
    "no-prompt-logprobs": body_with(prompt_logprobs=None),
}


@pytest.mark.parametrize("bad", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_untrustworthy_body_once_is_retried(server: LoopbackServer, bad: bytes) -> None:
    server.script(CHAT, Reply(body=bad), OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 2)


@pytest.mark.parametrize("bad", BAD_BODIES.values(), ids=BAD_BODIES.keys())
async def test_untrustworthy_body_every_time_is_a_response_error(
    server: LoopbackServer, bad: bytes
) -> None:
    server.always(CHAT, Reply(body=bad))
    async with client_for(server.url) as client:
        with pytest.raises(InferenceResponseError):
            await score(client)
    assert len(server.requests) == 3


# --- errors that retrying cannot fix ------------------------------------------------


CONTEXT_LENGTH = (
    "This model's maximum context length is 2048 tokens. However, you requested 5000 tokens "
    "(4999 in the messages, 1 in the completion). Please reduce the length of the messages."
)


@pytest.mark.parametrize(
    "reply",
    [
        Reply.error(400, CONTEXT_LENGTH),
        Reply.json({"error": {"message": CONTEXT_LENGTH, "code": 400}}, status=400),
        Reply.error(400, "The prompt is too long for this model."),
    ],
    ids=["vllm-object-error", "openai-nested-error", "too-long"],
)
async def test_context_length_is_rejected_without_retrying(
    server: LoopbackServer, reply: Reply
) -> None:
    server.always(CHAT, reply)
    async with client_for(server.url) as client:
        with pytest.raises(ContextLengthError):
            await score(client)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "prompt_logprobs must be a non-negative integer"),
        (422, "Field required"),
    ],
)
async def test_other_client_errors_are_rejected_without_retrying(
    server: LoopbackServer, status: int, message: str
) -> None:
    server.always(CHAT, Reply.error(status, message))
    async with client_for(server.url) as client:
        with pytest.raises(ModelRequestRejected) as info:
            await score(client)
    assert (info.value.status_code, info.value.message, len(server.requests)) == (
        status,
        f"{server.host} answered {status} Error",
        1,
    )


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_are_unavailable_not_a_bad_event(
    server: LoopbackServer, status: int
) -> None:
    server.always(CHAT, Reply.error(status, "invalid api key"))
    async with client_for(server.url, api_key="wrong") as client:
        with pytest.raises(InferenceUnavailable, match=str(status)):
            await score(client)
    assert len(server.requests) == 3


# --- 404: the model is not served there (yet), or the URL is wrong --------------------

NOT_FOUND = "The model `m` does not exist."
MODEL_NOT_FOUND = {
    # vLLM >= 0.10.1 nests the error; before, it was flat (serving_engine._check_model).
    "nested": Reply.json(
        {"error": {"message": NOT_FOUND, "type": "NotFoundError", "param": "model", "code": 404}},
        status=404,
    ),
    "flat": Reply.json(
        {"object": "error", "message": NOT_FOUND, "type": "NotFoundError", "code": 404},
        status=404,
    ),
}


@pytest.mark.parametrize("reply", MODEL_NOT_FOUND.values(), ids=MODEL_NOT_FOUND.keys())
async def test_model_not_found_is_retried_until_the_server_serves_it(
    server: LoopbackServer, reply: Reply
) -> None:
    # A rollout: the server comes up with the new model a little after the workers.
    server.script(CHAT, reply, reply, OK)
    async with client_for(server.url) as client:
        result = await score(client)
    assert (result.prompt_tokens, len(server.requests)) == (len(TEXTS), 3)


@pytest.mark.parametrize("reply", MODEL_NOT_FOUND.values(), ids=MODEL_NOT_FOUND.keys())
async def test_model_not_found_for_long_is_unavailable_never_a_bad_event(
    server: LoopbackServer, reply: Reply
) -> None:
    server.always(CHAT, reply)
    async with client_for(server.url) as client:
        with pytest.raises(InferenceUnavailable) as info:
            await score(client)
    assert (info.value.message, len(server.requests)) == (
        f"{server.host} does not serve the requested model (404 NotFoundError)",
        3,
    )


async def test_a_server_without_the_model_is_skipped_once_its_circuit_opens(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    # One server of the pool still runs the old model: the work goes to the others.
    server.always(CHAT, MODEL_NOT_FOUND["nested"])
    other_server.always(CHAT, OK)
    async with client_for(
        server.url, other_server.url, breaker_failure_threshold=2, breaker_reset_seconds=60.0
    ) as client:
        for _ in range(5):
            await score(client)
    assert (len(server.requests), len(other_server.requests)) == (2, 5)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=404, body=b"404 page not found"),
        Reply.json({"detail": "Not Found"}, status=404),
        Reply.error(404, "Route not found"),
    ],
    ids=["plain-text", "fastapi", "json-error"],
)
async def test_any_other_404_is_a_configuration_problem_not_a_bad_event(
    server: LoopbackServer, reply: Reply
) -> None:
    # A base URL missing its path prefix, a gateway that does not route the path.
    server.always(CHAT, reply)
    async with client_for(server.url) as client:
        with pytest.raises(InferenceUnavailable) as info:
            await score(client)
    assert (info.value.message, len(server.requests)) == (
        f"{server.host} answered 404 for /v1/chat/completions: check its URL",
        3,
    )


# --- ambiguous top-k dicts --------------------------------------------------------


async def test_ambiguous_topk_dicts_are_resolved_with_the_servers_tokenize(
    server: LoopbackServer,
) -> None:
    ids = list(range(1000, 1000 + len(TEXTS)))
    server.script(CHAT, Reply(body=vllm_shapes.body(TEXTS, top_k=2, ids=ids)))
    server.script("/tokenize", Reply.json({"count": len(ids), "tokens": ids}))
    async with client_for(server.url) as client:
        result = await score(client)
    assert result.tokens.token_ids.tolist() == ids


async def test_tokenize_is_asked_with_the_model_and_messages(server: LoopbackServer) -> None:
    ids = list(range(1000, 1000 + len(TEXTS)))
    server.script(CHAT, Reply(body=vllm_shapes.body(TEXTS, top_k=2, ids=ids)))
    server.script("/tokenize", Reply.json({"count": len(ids), "tokens": ids}))
    async with client_for(server.url) as client:
        await score(client)
    assert server.received("/tokenize")[0].json() == {"model": "m", "messages": MESSAGES}


@pytest.mark.parametrize(
    "answer",
    [{"tokens": "1 2 3"}, {"count": 3}, {"tokens": [1, "2"]}, {"tokens": [1, 2, 3]}],
    ids=["not-a-list", "no-tokens", "not-ints", "wrong-length"],
)
async def test_unusable_tokenize_answer_is_a_response_error(
    server: LoopbackServer, answer: dict[str, Any]
) -> None:
    server.always(CHAT, Reply(body=vllm_shapes.body(TEXTS, top_k=2)))
    server.always("/tokenize", Reply.json(answer))
    async with client_for(server.url) as client:
        with pytest.raises(InferenceResponseError):
            await score(client)
    assert len(server.received(CHAT)) == 3


# --- the pool: least loaded, circuit breakers ------------------------------------------


async def test_concurrent_requests_are_spread_over_the_servers(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    for each in (server, other_server):
        each.always(CHAT, Reply(body=OK.body, delay=0.05))
    async with client_for(server.url, other_server.url) as client:
        await asyncio.gather(*(score(client) for _ in range(4)))
    assert (len(server.requests), len(other_server.requests)) == (2, 2)


async def test_requests_queued_in_the_limiter_go_to_the_least_loaded_server_once_admitted(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    for each in (server, other_server):
        each.always(CHAT, Reply(body=OK.body, delay=0.05))
    limiter = InflightLimiter(max_requests=2, max_tokens=1_000_000)
    async with client_for(server.url, other_server.url, limiter=limiter) as client:
        await asyncio.gather(*(score(client) for _ in range(6)))
    assert (len(server.requests), len(other_server.requests)) == (3, 3)


async def test_failing_server_is_skipped_once_its_circuit_opens(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    server.always(CHAT, Reply.error(503, "down"))
    other_server.always(CHAT, OK)
    async with client_for(
        server.url, other_server.url, breaker_failure_threshold=2, breaker_reset_seconds=60.0
    ) as client:
        for _ in range(5):
            await score(client)
    assert (len(server.requests), len(other_server.requests)) == (2, 5)


async def test_open_circuit_is_exported_as_a_metric(
    server: LoopbackServer, other_server: LoopbackServer
) -> None:
    server.always(CHAT, Reply.error(503, "down"))
    other_server.always(CHAT, OK)
    async with client_for(
        server.url, other_server.url, breaker_failure_threshold=2, breaker_reset_seconds=60.0
    ) as client:
        await score(client)
    state = REGISTRY.get_sample_value(
        "memscore_circuit_breaker_state", {"dependency": "vllm", "endpoint": server.host}
    )
    assert state == 2.0


async def test_client_is_unavailable_while_every_circuit_is_open(server: LoopbackServer) -> None:
    server.always(CHAT, Reply.error(503, "down"))
    async with client_for(
        server.url, max_attempts=1, breaker_failure_threshold=1, breaker_reset_seconds=60.0
    ) as client:
        with pytest.raises(InferenceUnavailable):
            await score(client)
        assert client.available() is False


async def test_rejected_event_does_not_count_against_the_server(server: LoopbackServer) -> None:
    server.script(CHAT, Reply.error(400, CONTEXT_LENGTH), OK)
    async with client_for(
        server.url, breaker_failure_threshold=1, breaker_reset_seconds=60.0
    ) as client:
        with pytest.raises(ContextLengthError):
            await score(client)
        result = await score(client)
    assert result.prompt_tokens == len(TEXTS)


async def test_cancelled_half_open_trial_lets_the_next_trial_through(
    server: LoopbackServer,
) -> None:
    gate = threading.Event()
    server.script(CHAT, Reply.error(503, "down"), Reply(body=OK.body, gate=gate), OK)
    async with client_for(
        server.url, max_attempts=1, breaker_failure_threshold=1, breaker_reset_seconds=0.01
    ) as client:
        with pytest.raises(InferenceUnavailable):
            await score(client)  # opens the circuit
        await asyncio.sleep(0.02)  # the reset time passes: half-open
        trial = asyncio.create_task(score(client))
        await server.wait_for_requests(2)
        trial.cancel()  # e.g. a sibling ablation failed
        with pytest.raises(asyncio.CancelledError):
            await trial
        result = await score(client)
    gate.set()
    assert result.prompt_tokens == len(TEXTS)
