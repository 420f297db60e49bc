"""The `auto` strategy: LOO when it fits the cap, otherwise the cheaper one for that size."""

from __future__ import annotations

import pytest

from tests.unit.strategy_models import SupportModel, conversation, run
from worker.scoring.strategies import Auto
from worker.scoring.strategies.auto import HYBRID_FROM_REQUESTS, SURROGATE_FROM_MEMORIES


def chosen(memories: int, budget: int | None) -> str:
    c = conversation(range(memories), [memories + 1], request_budget=budget)
    return Auto().choose(c).name


@pytest.mark.parametrize(
    ("memories", "budget", "expected"),
    [
        (40, None, "loo"),  # no cap: LOO always fits
        (40, 40, "loo"),  # the cap holds every ablation
        (64, HYBRID_FROM_REQUESTS, "hybrid"),  # the hybrid needs requests, not memories
        (HYBRID_FROM_REQUESTS + 1, HYBRID_FROM_REQUESTS, "hybrid"),
        (200, HYBRID_FROM_REQUESTS - 1, "surrogate"),
        (64, 3, "surrogate"),
        (20, 11, "hybrid"),  # few memories: over half of them measured exactly
        (20, 10, "surrogate"),
        (10, 6, "hierarchical"),  # more than N / 2, but below 16 memories
        (SURROGATE_FROM_MEMORIES, 3, "surrogate"),
        (SURROGATE_FROM_MEMORIES - 1, 3, "hierarchical"),
        (4, 0, "hierarchical"),
    ],
)
def test_auto_chooses_by_the_cap_and_the_number_of_memories(
    memories: int, budget: int | None, expected: str
) -> None:
    assert chosen(memories, budget) == expected


@pytest.mark.parametrize("memories", [2, 8, 16, 40])
@pytest.mark.parametrize("budget", [0, 1, 5, 12, 39, None])
def test_auto_never_sends_more_ablations_than_loo(memories: int, budget: int | None) -> None:
    c = conversation(range(memories), [memories + 1], request_budget=budget)
    model = SupportModel([[frozenset({0}), frozenset({memories - 1})]])
    result = run(Auto(), c, model, budget=budget)
    assert len(result.sent) <= memories


@pytest.mark.parametrize("memories", [8, 20, 64, 100])
def test_auto_sends_fewer_ablations_than_loo_even_when_the_cap_would_allow_more(
    memories: int,
) -> None:
    # The executor budgets each ablation at the baseline's length; ablations that leave
    # out many memories are shorter, so later rounds may be offered more requests than
    # the cap seemed to allow at first (here: no limit at all after the first plan).
    c = conversation(range(memories), [memories + 1], request_budget=memories - 1)
    model = SupportModel([[frozenset({0}), frozenset({memories - 1})]])
    result = run(Auto(), c, model)
    assert len(result.sent) <= memories - 1


def test_auto_records_the_strategy_it_chose() -> None:
    c = conversation(range(20), [21], request_budget=10)
    result = run(Auto(), c, SupportModel([[frozenset({0})]]), budget=10)
    assert result.score.strategy == "surrogate"
