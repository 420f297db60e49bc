"""Parsing vLLM's prompt_logprobs bodies: real shapes, top-k dicts, and bad bodies."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.unit import vllm_shapes
from worker.errors import InferenceResponseError
from worker.inference.response import AmbiguousPromptTokens, parse_prompt_logprobs

# Copies of ../shared/examples: real SmolLM2 exchanges in vLLM's wire format.
EXAMPLES = Path(__file__).parents[1] / "data" / "vllm"
TEXTS = ["<|im_start|>", "user", "\n", "Hi", "<|im_end|>"]


def test_k0_body_gives_ids_logprobs_and_texts() -> None:
    stream = parse_prompt_logprobs(vllm_shapes.body(TEXTS, lambda i, t: -0.5 * i))
    assert stream.texts[1:] == TEXTS[1:]
    assert stream.logprobs[1:].tolist() == [-0.5, -1.0, -1.5, -2.0]
    assert stream.token_ids[1] == vllm_shapes.token_id("user") + 50_000
    assert math.isnan(stream.logprobs[0])


def test_topk_dicts_are_resolved_with_prompt_token_ids() -> None:
    body = vllm_shapes.body(TEXTS, lambda i, t: -2.0, top_k=2, with_ids=True)
    stream = parse_prompt_logprobs(body, requested_k=2)
    assert stream.logprobs[1:].tolist() == [-2.0] * 4


def test_topk_plus_one_dicts_are_resolved_by_rank_without_ids() -> None:
    body = vllm_shapes.body(TEXTS, lambda i, t: -2.0, top_k=2)
    stream = parse_prompt_logprobs(body, requested_k=2)
    assert stream.texts[1:] == TEXTS[1:]


def test_topk_dicts_without_ids_are_ambiguous_when_the_token_is_among_them() -> None:
    body = vllm_shapes.body(TEXTS, top_k=2)
    with pytest.raises(AmbiguousPromptTokens):
        parse_prompt_logprobs(body, requested_k=3)


def test_ids_from_tokenize_override_the_body() -> None:
    ids = [7, 8, 9, 10, 11]
    body = vllm_shapes.body(TEXTS, top_k=2, ids=ids)
    assert (
        parse_prompt_logprobs(body, requested_k=3, prompt_token_ids=ids).token_ids.tolist() == ids
    )


def test_minus_9999_stands_for_minus_infinity_and_is_kept() -> None:
    stream = parse_prompt_logprobs(vllm_shapes.body(TEXTS, lambda i, t: -9999.0))
    assert stream.logprobs[1:].tolist() == [-9999.0] * 4


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.replace(b'"logprob": -1.0', b'"logprob": NaN', 1), "unreadable"),
        (lambda b: b[: len(b) // 2], "unreadable"),
        (lambda b: b.replace(b'"prompt_tokens": 5', b'"prompt_tokens": 6'), "usage.prompt_tokens"),
        (lambda b: b.replace(b'"decoded_token"', b'"decoded"', 1), "decoded_token"),
        (lambda b: b.replace(b'"logprob": -1.0', b'"logprob": 0.5', 1), "positive"),
        (lambda b: b.replace(b'"prompt_logprobs": [null', b'"prompt_logprobs": [{}'), "null"),
        (lambda b: b.replace(b"prompt_logprobs", b"other"), "no prompt_logprobs"),
        (lambda b: b"\xff\xfe" + b, "unreadable|UTF-8"),
    ],
)
def test_bad_bodies_are_errors_not_zeros(mutate: object, message: str) -> None:
    body = mutate(vllm_shapes.body(TEXTS))  # type: ignore[operator]
    with pytest.raises(InferenceResponseError, match=message):
        parse_prompt_logprobs(body)


@pytest.mark.parametrize("name", ["k0", "k2"])
def test_recorded_smollm2_exchange_parses(name: str) -> None:
    exchange = json.loads((EXAMPLES / f"chat-prompt-logprobs-{name}.json").read_text())
    k = exchange["request"]["prompt_logprobs"]
    body = json.dumps(exchange["response"]).encode()
    if k == 0:
        stream = parse_prompt_logprobs(body)
    else:
        # The actual prompt token sits among the top-k at some positions: the ids must
        # come from elsewhere (the k=0 exchange of the same prompt has them).
        k0 = json.loads((EXAMPLES / "chat-prompt-logprobs-k0.json").read_text())
        ids = [-1] + [int(next(iter(e))) for e in k0["response"]["prompt_logprobs"][1:]]
        ids[0] = int(next(iter(exchange["response"]["prompt_logprobs"][1])))  # unused position
        stream = parse_prompt_logprobs(body, requested_k=k, prompt_token_ids=ids)
    assert len(stream) == exchange["response"]["usage"]["prompt_tokens"]
    assert "Your cat is called Zo" in "".join(stream.texts)
