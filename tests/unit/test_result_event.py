"""The memory-scored event tells a consumer how each importance was obtained."""

from __future__ import annotations

import json

import numpy as np

from worker.consumer.messages import result_event
from worker.scoring import ConversationScore, MemoryScore


def body_of(score: MemoryScore) -> dict[str, object]:
    result = ConversationScore("ev-1", "conv-1", "m", score, 3, 300, 5, 0.5, "1")
    decoded = json.loads(result_event(result))
    assert isinstance(decoded, dict)
    return decoded


def surrogate_score(capped: bool = False) -> MemoryScore:
    return MemoryScore(
        memory_keys=("a", "b", "c"),
        memory_entry_indices=(0, 1, 5),
        response_entry_indices=(3,),
        response_token_counts=(5,),
        matrix=np.array([[1.5], [0.2], [0.0]]),
        strategy="surrogate",
        row_kinds=("estimated", "estimated", "skipped"),
        capped=capped,
    )


def test_event_names_the_strategy_and_that_the_scores_are_estimates() -> None:
    body = body_of(surrogate_score())
    assert (body["strategy"], body["exact"], body["capped"]) == ("surrogate", False, False)


def test_each_memory_says_how_its_importance_was_obtained() -> None:
    body = body_of(surrogate_score())
    memories = body["memories"]
    assert isinstance(memories, list)
    assert [(m["kind"], m["exact"]) for m in memories] == [
        ("estimated", False),
        ("estimated", False),
        ("skipped", True),
    ]


def test_event_says_when_the_cap_cut_the_scoring_short() -> None:
    assert body_of(surrogate_score(capped=True))["capped"] is True


def test_a_leave_one_out_score_is_exact() -> None:
    score = MemoryScore(
        memory_keys=("a",),
        memory_entry_indices=(0,),
        response_entry_indices=(3,),
        response_token_counts=(5,),
        matrix=np.array([[1.5]]),
    )
    assert (body_of(score)["strategy"], body_of(score)["exact"]) == ("loo", True)
