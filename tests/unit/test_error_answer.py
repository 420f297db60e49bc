"""ErrorAnswer: what a model server's error body may tell us, and nothing it says beyond.

The context-length messages are vLLM's own wording, release by release (its
serving_engine._validate_input up to 0.10.1, the 0.10.2 rewording, the renderers'
TokenizeParams, the V1 engine's _validate_prompt_len), with their numbers.
"""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.inference.error_answer import ContextLength, ErrorAnswer

CONTEXT_LENGTH_MESSAGES = {
    "vllm-0.9-with-max-tokens": (
        "This model's maximum context length is 8192 tokens. However, you requested 9001 "
        "tokens (9000 in the messages, 1 in the completion). Please reduce the length of the "
        "messages or completion.",
        ContextLength(max_model_len=8192, input_tokens=9000, output_tokens=1),
        "context length 8192 tokens, requested 9000 input tokens and 1 output tokens",
    ),
    "vllm-0.9-without-max-tokens": (
        "This model's maximum context length is 8192 tokens. However, you requested 9000 "
        "tokens in the messages, Please reduce the length of the messages.",
        ContextLength(max_model_len=8192, input_tokens=9000),
        "context length 8192 tokens, requested 9000 input tokens",
    ),
    "vllm-0.10.2-input": (
        "This model's maximum context length is 8192 tokens. However, your request has 9000 "
        "input tokens. Please reduce the length of the input messages.",
        ContextLength(max_model_len=8192, input_tokens=9000),
        "context length 8192 tokens, requested 9000 input tokens",
    ),
    "vllm-0.10.2-max-tokens": (
        "'max_tokens' or 'max_completion_tokens' is too large: 1. This model's maximum "
        "context length is 8192 tokens and your request has 8192 input tokens "
        "(1 > 8192 - 8192).",
        ContextLength(max_model_len=8192, input_tokens=8192, output_tokens=1),
        "context length 8192 tokens, requested 8192 input tokens and 1 output tokens",
    ),
    "vllm-renderer-tokens": (
        "You passed 9000 input tokens and requested 1 output tokens. However, the model's "
        "context length is only 8192 tokens, resulting in a maximum input length of 8191 "
        "tokens. Please reduce the length of the input prompt. "
        "(parameter=input_tokens, value=9000)",
        ContextLength(max_model_len=8192, input_tokens=9000, output_tokens=1),
        "context length 8192 tokens, requested 9000 input tokens and 1 output tokens",
    ),
    "vllm-renderer-characters": (
        "You passed 40000 input characters and requested 1 output tokens. However, the "
        "model's context length is only 8192 tokens, resulting in a maximum input length of "
        "8191 tokens (at most 32764 characters). Please reduce the length of the input "
        "prompt. (parameter=input_text, value=40000)",
        ContextLength(max_model_len=8192, output_tokens=1, input_characters=40000),
        "context length 8192 tokens, requested 40000 input characters and 1 output tokens",
    ),
    "vllm-engine-longer": (
        "The decoder prompt (length 9000) is longer than the maximum model length of 8192. "
        "Make sure that `max_model_len` is no smaller than the number of text tokens.",
        ContextLength(max_model_len=8192, input_tokens=9000),
        "context length 8192 tokens, requested 9000 input tokens",
    ),
    "vllm-engine-equal": (
        "The decoder prompt (length 8192) plus the number of requested output tokens (at "
        "least 1) is longer than the maximum model length of 8192. Make sure that "
        "`max_model_len` is no smaller than the number of text tokens (prompt + requested "
        "output tokens).",
        ContextLength(max_model_len=8192, input_tokens=8192),
        "context length 8192 tokens, requested 8192 input tokens",
    ),
    "no-numbers": (
        "The prompt is too long for this model.",
        ContextLength(),
        "no numbers given",
    ),
}


def nested(message: str, error_type: object = "BadRequestError", **more: object) -> bytes:
    """vLLM >= 0.10.1."""
    return json.dumps({"error": {"message": message, "type": error_type, **more}}).encode()


def flat(message: str, error_type: object = "BadRequestError", **more: object) -> bytes:
    """vLLM before 0.10.1."""
    return json.dumps({"object": "error", "message": message, "type": error_type, **more}).encode()


@pytest.mark.parametrize("shape", [nested, flat])
@pytest.mark.parametrize(
    ("message", "numbers", "sentence"),
    CONTEXT_LENGTH_MESSAGES.values(),
    ids=CONTEXT_LENGTH_MESSAGES.keys(),
)
def test_context_length_refusals_are_recognised_with_their_numbers(
    shape: object, message: str, numbers: ContextLength, sentence: str
) -> None:
    answer = ErrorAnswer.parse(400, shape(message, code=400))  # type: ignore[operator]
    assert answer.context_length == numbers
    assert answer.context_length.describe() == sentence


@pytest.mark.parametrize(
    "message",
    [
        "prompt_logprobs must be a non-negative integer",
        "`prompt_logprobs` are not available when `stream=True`.",
        "Requested prompt logprobs of 21, which is greater than max allowed: 20",
        "Token id 999999 is out of vocabulary",
    ],
)
def test_other_refusals_are_not_context_length(message: str) -> None:
    assert ErrorAnswer.parse(400, nested(message)).context_length is None


def test_a_5xx_is_never_a_context_length_refusal() -> None:
    message = CONTEXT_LENGTH_MESSAGES["vllm-0.10.2-input"][0]
    assert ErrorAnswer.parse(500, nested(message)).context_length is None


MODEL_NOT_FOUND = "The model `qwen3-8b-v2` does not exist."


@pytest.mark.parametrize(
    "body",
    [
        nested(MODEL_NOT_FOUND, "NotFoundError", param="model", code=404),
        flat(MODEL_NOT_FOUND, "NotFoundError", code=404),
        nested("Model not found", "NotFoundError", param="model"),
        nested(MODEL_NOT_FOUND, None),
    ],
    ids=["vllm-nested", "vllm-flat", "by-type-and-param", "by-message"],
)
def test_a_404_for_the_model_is_model_not_found(body: bytes) -> None:
    assert ErrorAnswer.parse(404, body).model_not_found is True


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, b"404 page not found"),
        (404, json.dumps({"detail": "Not Found"}).encode()),
        (404, nested("Route not found", "NotFoundError")),
        (400, nested(MODEL_NOT_FOUND, "NotFoundError", param="model")),
    ],
    ids=["plain-text", "fastapi", "another-not-found", "not-a-404"],
)
def test_anything_else_is_not_model_not_found(status: int, body: bytes) -> None:
    assert ErrorAnswer.parse(status, body).model_not_found is False


@pytest.mark.parametrize(
    ("error_type", "kept"),
    [
        ("BadRequestError", "BadRequestError"),
        ("invalid_request_error", "invalid_request_error"),
        ("vllm.errors.Overloaded", "vllm.errors.Overloaded"),
        ("Bad Request", None),
        ("Your dog is called Biscuit.", None),
        ("x" * 65, None),
        ("", None),
        ("4xx", None),
        (404, None),
        (None, None),
        (["BadRequestError"], None),
    ],
)
def test_the_error_type_is_kept_only_when_it_is_a_short_identifier(
    error_type: object, kept: str | None
) -> None:
    assert ErrorAnswer.parse(400, nested("m", error_type)).error_type == kept


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>502 Bad Gateway</html>", b"\xff\xfe", b"[" * 100_000, b"null", b"[1, 2]"],
    ids=["empty", "html", "not-utf8", "deeply-nested", "null", "array"],
)
def test_a_body_that_is_no_vllm_error_gives_the_status_alone(body: bytes) -> None:
    assert ErrorAnswer.parse(503, body) == ErrorAnswer(503)


def test_the_description_is_the_status_and_the_type() -> None:
    described = [ErrorAnswer(503).describe(), ErrorAnswer(400, "BadRequestError").describe()]
    assert described == ["503", "400 BadRequestError"]


# Every sentence ContextLength.describe can make, its numbers written N.
SENTENCES = {
    re.sub(r"\d+", "N", ContextLength(*fields).describe())
    for fields in itertools.product([None, 1], repeat=4)
}


@given(
    prefix=st.sampled_from([message for message, _, _ in CONTEXT_LENGTH_MESSAGES.values()]),
    echoed=st.text(),
    status=st.integers(400, 599),
)
def test_nothing_but_numbers_goes_from_the_body_into_a_description(
    prefix: str, echoed: str, status: int
) -> None:
    # A gateway that echoes the request puts users' text around the server's message.
    for body in (nested(echoed + prefix + echoed, echoed), flat(prefix + echoed, echoed)):
        answer = ErrorAnswer.parse(status, body)
        assert re.sub(r"\d+", "N", answer.describe()) in ("N", "N BadRequestError") or (
            answer.error_type == echoed
        )
        if answer.context_length is not None:
            assert re.sub(r"\d+", "N", answer.context_length.describe()) in SENTENCES
