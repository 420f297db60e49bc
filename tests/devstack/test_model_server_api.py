"""The model server speaks vLLM's wire format, with either backend, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "[memory] The user's cat is called Zoë and lives in Łódź."},
    {"role": "user", "content": "What is my cat called?"},
    {"role": "assistant", "content": "Your cat is called Zoë, in Łódź."},
]


@pytest.fixture(
    params=[
        "synthetic",
        pytest.param("smollm2", marks=[pytest.mark.slow, pytest.mark.model]),
    ]
)
def served(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(base URL, served model name) of each backend's session server."""
    model: str = request.param
    url: str = request.getfixturevalue(f"{model}_model_url")
    return url, model


def chat(served: tuple[str, str], **fields: Any) -> dict[str, Any]:
    url, model = served
    payload = {"model": model, "messages": CONVERSATION, "max_tokens": 1, **fields}
    response = httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_k0_gives_null_then_one_entry_keyed_by_the_prompt_token(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=0, return_token_ids=True)

    entries, token_ids = body["prompt_logprobs"], body["prompt_token_ids"]
    assert entries[0] is None
    assert [list(entry) for entry in entries[1:]] == [[str(t)] for t in token_ids[1:]]


def test_k0_entries_carry_logprob_rank_and_decoded_token(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=0)

    infos = [next(iter(entry.values())) for entry in body["prompt_logprobs"][1:]]
    assert all(set(info) == {"logprob", "rank", "decoded_token"} for info in infos)
    assert all(info["logprob"] <= 0 and info["rank"] >= 1 for info in infos)


def test_k2_adds_the_top_two_after_the_prompt_token(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=2, return_token_ids=True)

    for token_id, entry in zip(
        body["prompt_token_ids"][1:], body["prompt_logprobs"][1:], strict=True
    ):
        first_id, first = next(iter(entry.items()))
        others = {info["rank"] for key, info in entry.items() if key != first_id}
        assert first_id == str(token_id)
        assert len(entry) == (2 if first["rank"] <= 2 else 3)
        assert others == {1, 2} - {first["rank"]}


def test_k2_logprobs_fall_with_rank(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=2)

    for entry in body["prompt_logprobs"][1:]:
        by_rank = sorted(entry.values(), key=lambda info: info["rank"])
        logprobs = [info["logprob"] for info in by_rank]
        assert logprobs == sorted(logprobs, reverse=True)


def test_split_characters_decode_as_replacement_characters(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=0)

    decoded = [next(iter(entry.values()))["decoded_token"] for entry in body["prompt_logprobs"][1:]]
    assert "\ufffd" in "".join(decoded)


def test_usage_counts_prompt_and_one_generated_token(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=0)

    assert body["usage"]["prompt_tokens"] == len(body["prompt_logprobs"])
    assert body["usage"]["completion_tokens"] == 1
    assert body["choices"][0]["message"]["role"] == "assistant"


def test_prompt_token_ids_only_when_asked(served: tuple[str, str]) -> None:
    body = chat(served, prompt_logprobs=0)

    assert "prompt_token_ids" not in body


def test_tokenize_counts_what_chat_scores(served: tuple[str, str]) -> None:
    url, model = served
    scored = chat(served, prompt_logprobs=0, return_token_ids=True)

    tokenized = httpx.post(
        f"{url}/tokenize", json={"model": model, "messages": CONVERSATION}
    ).json()

    assert tokenized["count"] == len(scored["prompt_logprobs"])
    assert tokenized["tokens"] == scored["prompt_token_ids"]
    assert tokenized["max_model_len"] == 8192


def test_models_lists_the_served_model(served: tuple[str, str]) -> None:
    url, model = served

    listing = httpx.get(f"{url}/v1/models").json()

    assert [card["id"] for card in listing["data"]] == [model]


def test_health_is_200_with_an_empty_body(served: tuple[str, str]) -> None:
    response = httpx.get(f"{served[0]}/health")

    assert (response.status_code, response.content) == (200, b"")
