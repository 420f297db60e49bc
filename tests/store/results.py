"""Building ConversationScore values for the store tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from worker.scoring.memory_score import ConversationScore, MemoryScore, RowKind, StrategyName


def make_result(
    event_id: str,
    memory_keys: Sequence[str] = ("m-alpha", "m-beta"),
    matrix: Sequence[Sequence[float]] | None = None,
    *,
    responses: int = 2,
    conversation_id: str = "conv-1",
    row_kinds: Sequence[RowKind] = (),
    strategy: StrategyName = "loo",
) -> ConversationScore:
    """A scored event; memory i sits at entry i, response j at entry 100 + j.

    The default matrix holds multiples of 1/4, so sums are exact in any order.
    """
    if matrix is None:
        matrix = [
            [0.25 * (i + 1) + 0.5 * j for j in range(responses)] for i in range(len(memory_keys))
        ]
    elif matrix:
        responses = len(matrix[0])
    array = np.array(matrix, dtype=np.float64).reshape(len(memory_keys), responses)
    width = responses
    score = MemoryScore(
        memory_keys=tuple(memory_keys),
        memory_entry_indices=tuple(range(len(memory_keys))),
        response_entry_indices=tuple(100 + j for j in range(width)),
        response_token_counts=tuple(10 + j for j in range(width)),
        matrix=array,
        row_kinds=tuple(row_kinds),
        strategy=strategy,
    )
    return ConversationScore(
        event_id=event_id,
        conversation_id=conversation_id,
        model="smollm2-135m",
        score=score,
        requests=len(memory_keys) + 1,
        prompt_tokens=1234,
        response_tokens=sum(score.response_token_counts),
        duration_seconds=1.5,
        scorer_version="1",
    )
