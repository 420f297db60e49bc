"""The model server refuses bad requests the way vLLM does: status, error type and wording."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devstack.model_server import ModelServerProcess, running_model_server

QUESTION = [{"role": "user", "content": "What is my cat called?"}]


def post_chat(url: str, headers: dict[str, str] | None = None, **fields: Any) -> httpx.Response:
    payload = {"model": "synthetic", "messages": QUESTION, "max_tokens": 1, **fields}
    return httpx.post(f"{url}/v1/chat/completions", json=payload, headers=headers)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    return error


def test_prompt_over_the_context_length_is_400(synthetic_model_url: str) -> None:
    long_question = [{"role": "user", "content": "word " * 9000}]

    response = post_chat(synthetic_model_url, messages=long_question, prompt_logprobs=0)

    assert response.status_code == 400
    assert error_of(response)["type"] == "BadRequestError"
    assert "maximum context length is 8192 tokens" in error_of(response)["message"]


def test_max_tokens_beyond_the_context_is_400(synthetic_model_url: str) -> None:
    response = post_chat(synthetic_model_url, max_tokens=8190, prompt_logprobs=0)

    assert response.status_code == 400
    assert "maximum context length" in error_of(response)["message"]


def test_unknown_model_is_404_not_found(synthetic_model_url: str) -> None:
    response = post_chat(synthetic_model_url, model="gpt-17", prompt_logprobs=0)

    assert response.status_code == 404
    assert error_of(response) == {
        "message": "The model `gpt-17` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


def test_stream_with_prompt_logprobs_is_400(synthetic_model_url: str) -> None:
    response = post_chat(synthetic_model_url, stream=True, prompt_logprobs=2)

    assert response.status_code == 400
    assert (
        error_of(response)["message"] == "`prompt_logprobs` are not available when `stream=True`."
    )


def test_more_prompt_logprobs_than_max_logprobs_is_400(synthetic_model_url: str) -> None:
    response = post_chat(synthetic_model_url, prompt_logprobs=21)

    assert response.status_code == 400
    assert "greater than max allowed: 20" in error_of(response)["message"]


def test_malformed_json_is_400(synthetic_model_url: str) -> None:
    response = httpx.post(f"{synthetic_model_url}/v1/chat/completions", content=b'{"model": ')

    assert response.status_code == 400
    assert error_of(response)["code"] == 400


def test_missing_messages_is_400(synthetic_model_url: str) -> None:
    response = httpx.post(f"{synthetic_model_url}/v1/chat/completions", json={"model": "synthetic"})

    assert response.status_code == 400


def test_legacy_errors_are_flat_like_older_vllm() -> None:
    with running_model_server("synthetic", legacy_errors=True) as url:
        response = post_chat(url, model="gpt-17")

    assert response.json() == {
        "object": "error",
        "message": "The model `gpt-17` does not exist.",
        "type": "NotFoundError",
        "param": "model",
        "code": 404,
    }


@pytest.fixture(scope="module")
def guarded_url() -> Iterator[str]:
    with ModelServerProcess("synthetic", flags={"api_key": "s3cret"}) as server:
        yield server.base_url


def test_v1_routes_demand_the_bearer_key(guarded_url: str) -> None:
    response = httpx.get(f"{guarded_url}/v1/models")

    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized"})


def test_the_wrong_key_is_refused(guarded_url: str) -> None:
    response = httpx.get(f"{guarded_url}/v1/models", headers={"Authorization": "Bearer nope"})

    assert response.status_code == 401


def test_the_right_key_is_let_in(guarded_url: str) -> None:
    response = post_chat(guarded_url, headers={"Authorization": "Bearer s3cret"})

    assert response.status_code == 200


def test_health_needs_no_key(guarded_url: str) -> None:
    assert httpx.get(f"{guarded_url}/health").status_code == 200
