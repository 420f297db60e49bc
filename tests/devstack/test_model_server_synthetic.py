"""The synthetic backend: deterministic, memories matter, and it costs time like a shared GPU."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import httpx
import pytest

from devstack.model_server import ModelServerProcess, running_model_server
from tests.fixtures.model_server import logprobs_of_last

MEMORY = {"role": "user", "content": "[memory] The user's dog is named Biscuit."}
UNRELATED = {"role": "user", "content": "[memory] The user works as a nurse in Leeds."}
QUESTION = {"role": "user", "content": "What is my dog called?"}
ANSWER = {"role": "assistant", "content": "Your dog is called Biscuit."}


def chat(url: str, messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    payload = {"model": "synthetic", "messages": messages, "max_tokens": 1, "prompt_logprobs": 0}
    response = httpx.post(f"{url}/v1/chat/completions", json={**payload, **fields}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def without_request_identity(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key not in ("id", "created")}


def test_the_same_request_gets_the_same_body(synthetic_model_url: str) -> None:
    messages = [MEMORY, QUESTION, ANSWER]

    first = chat(synthetic_model_url, messages, prompt_logprobs=2)
    second = chat(synthetic_model_url, messages, prompt_logprobs=2)

    assert without_request_identity(first) == without_request_identity(second)


def test_removing_the_supporting_memory_lowers_the_answer(synthetic_model_url: str) -> None:
    with_memory = chat(synthetic_model_url, [MEMORY, QUESTION, ANSWER])
    without_memory = chat(synthetic_model_url, [QUESTION, ANSWER])

    drop = sum(logprobs_of_last(with_memory, " Biscuit")) - sum(
        logprobs_of_last(without_memory, " Biscuit")
    )
    assert drop > 2.0


def test_removing_an_unrelated_memory_changes_nothing(synthetic_model_url: str) -> None:
    with_unrelated = chat(synthetic_model_url, [UNRELATED, MEMORY, QUESTION, ANSWER])
    without_unrelated = chat(synthetic_model_url, [MEMORY, QUESTION, ANSWER])

    answer = ANSWER["content"]
    assert logprobs_of_last(with_unrelated, answer) == logprobs_of_last(without_unrelated, answer)


def test_top_k_probabilities_sum_to_at_most_one(synthetic_model_url: str) -> None:
    body = chat(synthetic_model_url, [MEMORY, QUESTION, ANSWER], prompt_logprobs=5)

    masses = [sum(math.exp(i["logprob"]) for i in e.values()) for e in body["prompt_logprobs"][1:]]
    assert max(masses) <= 1.0


def test_noise_makes_an_unrelated_memory_matter_a_little() -> None:
    with running_model_server("synthetic", logprob_noise=0.05) as url:
        noisy = chat(url, [UNRELATED, MEMORY, QUESTION, ANSWER])
        clean = chat(url, [MEMORY, QUESTION, ANSWER])

    answer = ANSWER["content"]
    assert logprobs_of_last(noisy, answer) != logprobs_of_last(clean, answer)


async def timed_chat(client: httpx.AsyncClient, messages: list[dict[str, str]]) -> float:
    started = time.perf_counter()
    payload = {"model": "synthetic", "messages": messages, "max_tokens": 1, "prompt_logprobs": 0}
    response = await client.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200
    return time.perf_counter() - started


# ~4,000 tokens: 0.4 s of simulated prefill at 10,000 tokens/s.
LONG = [{"role": "user", "content": "alpha beta gamma delta " * 1000}]


async def test_two_concurrent_requests_share_the_capacity() -> None:
    with running_model_server("synthetic", prefill_tokens_per_second=10_000) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            alone = await timed_chat(client, LONG)
            together = await asyncio.gather(timed_chat(client, LONG), timed_chat(client, LONG))

    assert 1.5 < min(together) / alone < 3.0


async def test_requests_beyond_max_batch_tokens_wait_their_turn() -> None:
    queueing = {"prefill_tokens_per_second": 10_000, "max_batch_tokens": 5_000}
    with ModelServerProcess("synthetic", flags=queueing) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            first, second = await asyncio.gather(timed_chat(client, LONG), timed_chat(client, LONG))

    assert min(first, second) / max(first, second) < 0.75


def test_stats_count_what_was_served() -> None:
    with running_model_server("synthetic", prefill_tokens_per_second=10_000_000) as url:
        bodies = [chat(url, [QUESTION, ANSWER]), chat(url, [MEMORY, QUESTION, ANSWER])]
        stats = httpx.get(f"{url}/stats").json()

    assert stats["requests_served"] == 2
    assert stats["prompt_tokens_processed"] == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert stats["capacity_tokens_per_second"] == 10_000_000
    assert 0 < stats["busy_seconds"] <= stats["uptime_seconds"]


def test_error_rate_one_answers_every_chat_with_a_5xx() -> None:
    with running_model_server("synthetic", error_rate=1.0) as url:
        statuses = {
            httpx.post(f"{url}/v1/chat/completions", json={"messages": [QUESTION]}).status_code
            for _ in range(10)
        }

    assert statuses <= {500, 503}


def test_latency_spikes_delay_the_answer() -> None:
    spiky = {"latency_spike_rate": 1.0, "latency_spike_seconds": 0.5}
    with ModelServerProcess("synthetic", flags=spiky) as server:
        started = time.perf_counter()
        chat(server.base_url, [QUESTION])
        elapsed = time.perf_counter() - started

    assert elapsed >= 0.5


def test_an_outage_answers_503_then_recovers() -> None:
    with running_model_server("synthetic", outage=["0:3"]) as url:
        during = httpx.get(f"{url}/health").status_code
        deadline = time.monotonic() + 15
        while httpx.get(f"{url}/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        after = httpx.get(f"{url}/health").status_code

    assert (during, after) == (503, 200)


def test_a_killed_server_refuses_connections_and_restarts_on_its_port() -> None:
    with ModelServerProcess("synthetic") as server:
        before = chat(server.base_url, [MEMORY, QUESTION, ANSWER])
        url = server.base_url
        server.kill()
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health")
        server.start()
        after = chat(server.base_url, [MEMORY, QUESTION, ANSWER])

    assert server.base_url == url
    assert before["prompt_logprobs"] == after["prompt_logprobs"]


def test_sigterm_stops_the_server_cleanly() -> None:
    server = ModelServerProcess("synthetic")
    server.start()

    exit_code = server.stop()
    server.close()

    assert exit_code == 0
