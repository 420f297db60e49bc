"""The strategies benchmark still runs: one small conversation on the synthetic server."""

from __future__ import annotations

import asyncio

from bench import strategies
from bench.strategy_conversations import bench_conversation
from worker.events import ConversationEvent


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
    rows = asyncio.run(strategies._backend("synthetic", synthetic_model_url, "synthetic", [(8, 1)]))
    row = rows[0]
    assert (row["loo"]["requests"], row["auto@40%"]["tokens_ratio"] <= 0.4) == (9, True)
    assert row["hybrid@16"]["chose"] == ["hybrid"]
