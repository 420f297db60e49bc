"""The strategies benchmark still runs: one small conversation on the synthetic server."""

from __future__ import annotations

import asyncio
from typing import Any

from bench import strategies
from bench.strategy_conversations import bench_conversation
from worker.events import ConversationEvent
from worker.inference.client import ClientConfig, InferenceClient
from worker.inference.limiter import InflightLimiter


def test_bench_conversation_has_exactly_the_memories_asked_for() -> None:
    event = ConversationEvent.model_validate(bench_conversation(3, 20).event)
    assert len(event.memory_indices) == 20


def test_one_memory_is_recalled_mid_conversation() -> None:
    event = ConversationEvent.model_validate(bench_conversation(3, 20).event)
    first_response = event.response_indices[0]
    assert sum(index > first_response for index in event.memory_indices) == 1


def test_strategies_are_compared_with_loo_on_the_synthetic_server(
    synthetic_model_url: str,
) -> None:
    rows, swept = asyncio.run(
        strategies._backend("synthetic", synthetic_model_url, "synthetic", [(8, 1)])
    )
    row = rows[0]
    assert swept == []
    assert (row["loo"]["requests"], row["auto@40%"]["tokens_ratio"] <= 0.4) == (9, True)
    assert row["hybrid@16"]["chose"] == ["hybrid"]


def test_the_cap_sweep_runs_auto_beside_what_it_chooses_between(synthetic_model_url: str) -> None:
    async def sweep() -> list[dict[str, Any]]:
        limiter = InflightLimiter(4, 1 << 20)
        config = ClientConfig(base_urls=[synthetic_model_url])
        async with InferenceClient(config, limiter) as client:
            return await strategies._sweep(
                lambda memories, seed: strategies.SharedAnswers(client),
                "synthetic",
                memories=20,
                conversations=1,
                shares=(0.25, 0.75),
            )

    tight, loose = asyncio.run(sweep())
    # 20 memories: 4 requests under a quarter of LOO's tokens, 14 under three quarters.
    assert (tight["request_budget"], loose["request_budget"]) == (4, 14)
    assert (tight["auto"]["chose"], loose["auto"]["chose"]) == (["surrogate"], ["hybrid"])
    assert tight["auto"]["tokens_ratio"] <= 0.25
    assert loose["auto"]["tokens_ratio"] <= 0.75
    assert 0 < max(tight["auto_tokens_over_cap"], loose["auto_tokens_over_cap"]) <= 1
