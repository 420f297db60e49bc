"""No text of a server's error body reaches an error message (a DLQ reason) or a log line.

A gateway that echoes the request puts users' messages in its error body. What the
client's errors may say: the endpoint's host and port, the status, vLLM's error type,
and the numbers of a context-length refusal. Over the real loopback server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.unit.loopback_server import LoopbackServer, Reply
from tests.unit.test_client import CHAT, MESSAGES, client_for, score
from worker.errors import ContextLengthError, MemscoreError

# Users' text, as a gateway would echo it: not an identifier, so not an error "type" either.
MARKER = "Your dog is called Biscuit, <secret@example.com>"
CONTEXT_LENGTH = (
    "This model's maximum context length is 8192 tokens. However, your request has 9000 "
    "input tokens. Please reduce the length of the input messages."
)


def json_reply(status: int, obj: object) -> Reply:
    return Reply.json(obj, status=status)


BODIES = {
    "nested-message": lambda s: json_reply(
        s, {"error": {"message": MARKER, "type": "BadRequestError", "code": s}}
    ),
    "flat-message": lambda s: json_reply(
        s, {"object": "error", "message": MARKER, "type": "Error", "code": s}
    ),
    "marker-as-type": lambda s: json_reply(s, {"error": {"message": "x", "type": MARKER}}),
    "marker-as-param": lambda s: json_reply(s, {"error": {"message": "x", "param": MARKER}}),
    "gateway-echo": lambda s: json_reply(
        s, {"error": "upstream refused", "request": {"messages": MESSAGES}, "detail": MARKER}
    ),
    "context-length-with-echo": lambda s: json_reply(
        s, {"error": {"message": f"{CONTEXT_LENGTH} Prompt: {MARKER}", "code": s}}
    ),
    "plain-text": lambda s: Reply(status=s, body=MARKER.encode()),
    "html": lambda s: Reply(status=s, body=f"<html><p>{MARKER}</p></html>".encode()),
}
STATUSES = [400, 404, 409, 413, 422, 429, 500, 502, 503]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("body", BODIES.values(), ids=BODIES.keys())
async def test_error_body_text_never_reaches_an_error_message(
    server: LoopbackServer, body: object, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    server.always(CHAT, body(status))  # type: ignore[operator]
    caplog.set_level(logging.DEBUG)
    async with client_for(server.url, max_attempts=2) as client:
        with pytest.raises(MemscoreError) as info:
            await score(client)
    said = [str(info.value), info.value.message, repr(info.value)]
    said += [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    assert [text for text in said if "Biscuit" in text or "secret@" in text] == []


@pytest.mark.parametrize(
    "body",
    [b"Biscuit", b'{"prompt_logprobs": "Biscuit"}', b'{"prompt_logprobs": [null, {"Biscuit": 1}]}'],
    ids=["not-json", "wrong-type", "bad-key"],
)
async def test_a_2xx_body_that_cannot_be_trusted_is_not_quoted_either(
    server: LoopbackServer, body: bytes
) -> None:
    server.always(CHAT, Reply(body=body))
    async with client_for(server.url, max_attempts=1) as client:
        with pytest.raises(MemscoreError) as info:
            await score(client)
    assert "Biscuit" not in str(info.value)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, "answered 503 BadRequestError"),
        (400, "answered 400 BadRequestError"),
        (429, "answered 429 BadRequestError"),
    ],
)
async def test_an_error_message_keeps_the_status_and_the_vllm_error_type(
    server: LoopbackServer, status: int, expected: str
) -> None:
    server.always(CHAT, BODIES["nested-message"](status))
    async with client_for(server.url, max_attempts=1) as client:
        with pytest.raises(MemscoreError) as info:
            await score(client)
    assert info.value.message == f"{server.host} {expected}"


async def test_a_context_length_refusal_keeps_its_numbers_in_our_words(
    server: LoopbackServer,
) -> None:
    server.always(CHAT, BODIES["context-length-with-echo"](400))
    async with client_for(server.url) as client:
        with pytest.raises(ContextLengthError) as info:
            await score(client)
    assert info.value.message == (
        "the model refused the conversation as longer than its context: "
        "context length 8192 tokens, requested 9000 input tokens"
    )
