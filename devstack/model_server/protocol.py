"""vLLM's OpenAI-compatible requests, the part memscore uses, and its error answers.

Validation follows vLLM's ChatCompletionRequest and serving checks; error messages copy
vLLM's wording, so a client that recognises e.g. "maximum context length" behaves the same
here. Bodies of successful answers are in `responses.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devstack.model_server.backends import ChatMessage, ChatPrompt

DEFAULT_MAX_TOKENS = 16  # vLLM defaults to the rest of the context; a CPU model can't afford it


class ApiError(Exception):
    """An error answered to the client, in vLLM's ErrorResponse shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param

    def body(self, *, legacy: bool) -> bytes:
        """vLLM nests the error under "error" since v0.10.1 (its PR 22099); before, it was flat."""
        info = {
            "message": self.message,
            "type": self.error_type,
            "param": self.param,
            "code": self.status,
        }
        shape = {"object": "error", **info} if legacy else {"error": info}
        return dumps(shape).encode()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str | None
    prompt: ChatPrompt
    prompt_logprobs: int | None
    max_tokens: int
    max_tokens_given: bool
    return_token_ids: bool


@dataclass(frozen=True, slots=True)
class TokenizeRequest:
    model: str | None
    prompt: ChatPrompt | str
    add_special_tokens: bool


def parse_json_object(raw: bytes) -> Mapping[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def _int_field(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be an integer.", param=name)
    return value


def _bool_field(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be a boolean.", param=name)
    return value


def _model_field(body: Mapping[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "`model` must be a string.", param="model")
    return model


def _content(value: Any) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list) and all(
        isinstance(p, dict) and p.get("type") == "text" for p in value
    ):
        return "\n".join(str(part.get("text", "")) for part in value)  # vLLM's "string" format
    raise ApiError(400, "Only text content is supported by this model server.", param="messages")


def _chat_prompt(body: Mapping[str, Any]) -> ChatPrompt:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` must be a non-empty list.", param="messages")
    parsed = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ApiError(400, "Each message needs a string `role`.", param="messages")
        parsed.append(ChatMessage(role=message["role"], content=_content(message.get("content"))))
    add_generation_prompt = _bool_field(body, "add_generation_prompt", True)
    continue_final_message = _bool_field(body, "continue_final_message", False)
    if add_generation_prompt and continue_final_message:
        raise ApiError(
            400, "Cannot set both `continue_final_message` and `add_generation_prompt` to True."
        )
    return ChatPrompt(tuple(parsed), add_generation_prompt, continue_final_message)


def parse_chat_request(body: Mapping[str, Any], *, max_logprobs: int) -> ChatRequest:
    prompt_logprobs = _int_field(body, "prompt_logprobs")
    if prompt_logprobs is not None:
        if _bool_field(body, "stream", False) and (prompt_logprobs > 0 or prompt_logprobs == -1):
            raise ApiError(400, "`prompt_logprobs` are not available when `stream=True`.")
        if prompt_logprobs < -1:
            raise ApiError(400, "`prompt_logprobs` must be a positive value or -1.")
        if prompt_logprobs == -1 or prompt_logprobs > max_logprobs:
            requested = "the whole vocabulary" if prompt_logprobs == -1 else prompt_logprobs
            raise ApiError(
                400,
                f"Requested prompt logprobs of {requested}, "
                f"which is greater than max allowed: {max_logprobs}",
                param="prompt_logprobs",
            )
    if _bool_field(body, "stream", False):
        raise ApiError(400, "Streaming is not supported by this model server.", param="stream")
    max_tokens = _int_field(body, "max_completion_tokens") or _int_field(body, "max_tokens")
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(400, f"max_tokens must be at least 1, got {max_tokens}.", param="max_tokens")
    return ChatRequest(
        model=_model_field(body),
        prompt=_chat_prompt(body),
        prompt_logprobs=prompt_logprobs,
        max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
        max_tokens_given=max_tokens is not None,
        return_token_ids=_bool_field(body, "return_token_ids", False),
    )


def parse_tokenize_request(body: Mapping[str, Any]) -> TokenizeRequest:
    if "messages" in body:
        return TokenizeRequest(
            _model_field(body), _chat_prompt(body), _bool_field(body, "add_special_tokens", False)
        )
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise ApiError(400, "Either `messages` or a string `prompt` must be provided.")
    return TokenizeRequest(
        _model_field(body), prompt, _bool_field(body, "add_special_tokens", True)
    )


def check_model(requested: str | None, served: str) -> None:
    if requested and requested != served:
        raise ApiError(
            404,
            f"The model `{requested}` does not exist.",
            error_type="NotFoundError",
            param="model",
        )


def check_context_length(request: ChatRequest, prompt_tokens: int, max_model_len: int) -> None:
    if prompt_tokens >= max_model_len:
        raise ApiError(
            400,
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {prompt_tokens} input tokens. Please reduce the length of the input "
            "messages.",
            param="input_tokens",
        )
    if request.max_tokens_given and prompt_tokens + request.max_tokens > max_model_len:
        raise ApiError(
            400,
            f"'max_tokens' or 'max_completion_tokens' is too large: {request.max_tokens}. This "
            f"model's maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_tokens} input tokens ({request.max_tokens} > {max_model_len} - "
            f"{prompt_tokens}).",
            param="max_tokens",
        )


def dumps(value: Any) -> str:
    """Compact JSON with non-ASCII kept as is, as vLLM's FastAPI responses write it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
