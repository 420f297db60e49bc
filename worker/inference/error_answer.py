"""What a model server's error answer may tell us, reduced to what is safe to repeat.

An error body is free text from the server, or from a gateway in front of it that may
echo the request — users' messages — back. None of it is copied into an error message,
a log line or a DLQ reason. What is kept: the status; vLLM's error ``type`` when it is
a short identifier; whether the model asked for is unknown to the server; and, for a
context-length refusal, the numbers in vLLM's message, restated in our own words.

Bodies, as vLLM sends them: nested ``{"error": {"message", "type", "param", "code"}}``
since v0.10.1, flat ``{"object": "error", "message", "type", "param", "code"}`` before.
Pure: bytes in, data out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
# Only the head of a message is searched: vLLM's sentences put their numbers first,
# and a gateway's echo of a huge request must not cost a regex scan of megabytes.
_SCANNED_CHARS = 4096

# vLLM's wording of a context-length refusal, over the releases (0.4 to today):
#   "This model's maximum context length is 8192 tokens. However, you requested 9000
#    tokens (8999 in the messages, 1 in the completion). ..."            (up to 0.10.1)
#   "... However, you requested 9000 tokens in the messages, Please ..."  (no max_tokens)
#   "This model's maximum context length is 8192 tokens. However, your request has 9000
#    input tokens. ..."                                                   (0.10.2 on)
#   "This model's maximum context length is 8192 tokens. However, your prompt contains
#    at least 8193 input tokens, which exceeds this limit even without any output
#    tokens. ... (parameter=input_tokens, value=8193)"   (0.32, recorded in the tests)
#   "'max_tokens' or 'max_completion_tokens' is too large: 1. This model's maximum
#    context length is 8192 tokens and your request has 8192 input tokens (1 > 8192 -
#    8192)."                                                              (0.10.2 on)
#   "You passed 9000 input tokens and requested 1 output tokens. However, the model's
#    context length is only 8192 tokens, resulting in a maximum input length of 8191
#    tokens. ... (parameter=input_tokens, value=9000)"                    (renderers)
#   "You passed 40000 input characters and requested 1 output tokens. However, the
#    model's context length is only 8192 tokens, ..."                     (renderers)
#   "The decoder prompt (length 9000) is longer than the maximum model length of 8192.
#    ..."                                                      (the V1 engine's check)
_CONTEXT_LENGTH_SIGNS = re.compile(
    r"maximum context length|context length is only|longer than the maximum model length"
    r"|too long",
    re.IGNORECASE,
)
_MAX_MODEL_LEN = (
    re.compile(r"maximum context length is (\d+)"),
    re.compile(r"context length is only (\d+)"),
    re.compile(r"maximum model length of (\d+)"),
)
_INPUT_TOKENS = (
    re.compile(r"\((\d+) in the messages"),
    re.compile(r"requested (\d+) tokens in the"),
    re.compile(r"request has (\d+) input tokens"),
    re.compile(r"passed (\d+) input tokens"),
    re.compile(r"prompt \(length (\d+)\)"),
    re.compile(r"prompt contains at least (\d+) input tokens"),
)
_OUTPUT_TOKENS = (
    re.compile(r"(\d+) in the completion\)"),
    re.compile(r"is too large: (\d+)"),
    re.compile(r"requested (\d+) output tokens"),
)
_INPUT_CHARACTERS = (re.compile(r"passed (\d+) input characters"),)
# "The model `X` does not exist." — X is not kept (it is whatever the request named).
_MODEL_NOT_FOUND = re.compile(r"The model `.*` does not exist", re.DOTALL)


def _first_number(patterns: tuple[re.Pattern[str], ...], text: str) -> int | None:
    for pattern in patterns:
        if found := pattern.search(text):
            return int(found.group(1))
    return None


@dataclass(frozen=True)
class ContextLength:
    """The numbers of a context-length refusal; any the message did not hold are None."""

    max_model_len: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_characters: int | None = None

    @classmethod
    def from_message(cls, message: str) -> ContextLength:
        return cls(
            max_model_len=_first_number(_MAX_MODEL_LEN, message),
            input_tokens=_first_number(_INPUT_TOKENS, message),
            output_tokens=_first_number(_OUTPUT_TOKENS, message),
            input_characters=_first_number(_INPUT_CHARACTERS, message),
        )

    def describe(self) -> str:
        """Our own sentence, e.g. "context length 8192 tokens, requested 9000 input tokens"."""
        parts = []
        if self.max_model_len is not None:
            parts.append(f"context length {self.max_model_len} tokens")
        requested = []
        if self.input_tokens is not None:
            requested.append(f"{self.input_tokens} input tokens")
        elif self.input_characters is not None:
            requested.append(f"{self.input_characters} input characters")
        if self.output_tokens is not None:
            requested.append(f"{self.output_tokens} output tokens")
        if requested:
            parts.append("requested " + " and ".join(requested))
        return ", ".join(parts) or "no numbers given"


@dataclass(frozen=True)
class ErrorAnswer:
    """An HTTP error answer, as much of it as may be repeated."""

    status: int
    #: vLLM's error type ("BadRequestError", "NotFoundError") when it is an identifier.
    error_type: str | None = None
    #: The server does not serve the model the request named (vLLM's 404 NotFoundError).
    model_not_found: bool = False
    #: Set when the answer refuses the prompt as longer than the model's context.
    context_length: ContextLength | None = None

    @classmethod
    def parse(cls, status: int, content: bytes) -> ErrorAnswer:
        message, error_type, param = _fields(content)
        scanned = message[:_SCANNED_CHARS]
        model_not_found = status == 404 and (
            (error_type == "NotFoundError" and param == "model")
            or _MODEL_NOT_FOUND.match(scanned) is not None
        )
        context_length = None
        if 400 <= status < 500 and not model_not_found and _CONTEXT_LENGTH_SIGNS.search(scanned):
            context_length = ContextLength.from_message(scanned)
        return cls(status, error_type, model_not_found, context_length)

    def describe(self) -> str:
        """The status and the type, e.g. "400 BadRequestError": nothing else the body said."""
        return f"{self.status} {self.error_type}" if self.error_type else str(self.status)


def _fields(content: bytes) -> tuple[str, str | None, str | None]:
    """(message, type if an identifier, param if an identifier) of a vLLM error body."""
    try:
        body = msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return "", None, None
    if not isinstance(body, dict):
        return "", None, None
    nested = body.get("error")
    error = nested if isinstance(nested, dict) else body
    message = error.get("message")
    return (
        message if isinstance(message, str) else "",
        _identifier(error.get("type")),
        _identifier(error.get("param")),
    )


def _identifier(value: object) -> str | None:
    return value if isinstance(value, str) and _IDENTIFIER.fullmatch(value) else None
