"""The smollm2 backend is a real language model: its logprobs match vLLM's and depend on context."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.model_server import logprobs_of_last, prompt_tokens

pytestmark = [pytest.mark.slow, pytest.mark.model]

MEMORY = {"role": "user", "content": "The user's dog is named Biscuit."}
QUESTION = {"role": "user", "content": "What is my dog called?"}
ANSWER = {"role": "assistant", "content": "Your dog is called Biscuit."}

# From shared/examples/chat-prompt-logprobs-k0.json: vLLM serving SmolLM2-135M-Instruct.
EXAMPLE = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "[memory] The user's cat is called Zoë and lives in Łódź 🐈."},
    {"role": "user", "content": "What is my cat called?"},
    {"role": "assistant", "content": "Your cat is called Zoë, in Łódź 🐈."},
]
# Prompt tokens 55.. ("Your cat is called Zoë, in Ł") as (id, decoded, logprob) in that file.
EXAMPLE_ANSWER = [
    (7334, "Your", -2.9651293754577637),
    (2644, " cat", -0.11413983255624771),
    (314, " is", -0.39737752079963684),
    (1217, " called", -0.6663287878036499),
    (26336, " Zo", -0.4576110541820526),
    (26547, "ë", -0.0007221474661491811),
    (28, ",", -1.2840774059295654),
    (281, " in", -6.507923603057861),
    (18811, " \ufffd", -5.062441825866699),
    (219, "\ufffd", -0.0005479741375893354),
]


def chat(url: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    payload = {"model": "smollm2", "messages": messages, "max_tokens": 1, "prompt_logprobs": 0}
    response = httpx.post(f"{url}/v1/chat/completions", json=payload, timeout=120)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_logprobs_match_the_recorded_vllm_exchange(smollm2_model_url: str) -> None:
    body = chat(smollm2_model_url, EXAMPLE)

    answer = prompt_tokens(body)[54:64]
    assert body["usage"]["prompt_tokens"] == 79
    assert [(i, text) for i, text, _ in answer] == [(i, text) for i, text, _ in EXAMPLE_ANSWER]
    assert [lp for *_, lp in answer] == pytest.approx([lp for *_, lp in EXAMPLE_ANSWER], abs=1e-3)


def test_the_memory_makes_the_name_likely(smollm2_model_url: str) -> None:
    with_memory = chat(smollm2_model_url, [MEMORY, QUESTION, ANSWER])
    without_memory = chat(smollm2_model_url, [QUESTION, ANSWER])

    # Measured: about -1.2 nats over " B", "isc", "uit" with the memory, -13.7 without.
    gain = sum(logprobs_of_last(with_memory, " Biscuit")) - sum(
        logprobs_of_last(without_memory, " Biscuit")
    )
    assert gain > 5.0


def test_the_answer_is_greedy_and_honours_max_tokens(smollm2_model_url: str) -> None:
    payload = {"model": "smollm2", "messages": [MEMORY, QUESTION], "max_tokens": 4}

    body = httpx.post(f"{smollm2_model_url}/v1/chat/completions", json=payload, timeout=120).json()

    assert body["usage"]["completion_tokens"] <= 4
    assert body["choices"][0]["message"]["content"]
