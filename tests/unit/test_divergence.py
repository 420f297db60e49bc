"""The divergence matrix: table-driven cases and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from worker.errors import ResponseLocateError
from worker.scoring import MemoryScore, ResponseTokens, build_memory_score, response_divergence


def tokens(*responses: list[float]) -> ResponseTokens:
    return ResponseTokens(
        token_ids=[np.arange(len(r), dtype=np.int64) for r in responses],
        logprobs=[np.array(r, dtype=np.float64) for r in responses],
    )


@pytest.mark.parametrize(
    ("baseline", "ablated", "metric", "floor", "expected"),
    [
        ([-1.0, -0.1], [-5.0, -0.1], "drop", 0.0, 4.0),
        ([-1.0, -2.0], [-0.5, -3.0], "drop", 0.0, 1.0),  # gains do not offset drops
        ([-1.0, -2.0], [-0.5, -3.0], "net", 0.0, 0.5),  # ...in the net metric they do
        ([-1.0, -1.0], [-1.05, -3.0], "drop", 0.1, 2.0),  # a drop under the floor counts 0
        ([-1.0], [-9999.0], "drop", 0.0, 9998.0),  # -inf comes as -9999.0
        ([], [], "drop", 0.0, 0.0),
    ],
)
def test_response_divergence(
    baseline: list[float], ablated: list[float], metric: str, floor: float, expected: float
) -> None:
    actual = response_divergence(
        np.array(baseline),
        np.array(ablated),
        metric=metric,
        noise_floor=floor,  # type: ignore[arg-type]
    )
    assert actual == pytest.approx(expected)


def test_a_response_before_the_memory_is_exactly_zero_even_if_logprobs_moved() -> None:
    score = build_memory_score(
        memory_keys=["late"],
        memory_entry_indices=[2],
        response_entry_indices=[1, 3],
        baseline=tokens([-1.0], [-1.0]),
        ablations=[tokens([-7.0], [-4.0])],
    )
    assert score.matrix.tolist() == [[0.0, 3.0]]


def test_token_count_mismatch_is_an_error() -> None:
    with pytest.raises(ResponseLocateError, match="response 0"):
        build_memory_score(
            memory_keys=["k"],
            memory_entry_indices=[0],
            response_entry_indices=[1],
            baseline=tokens([-1.0, -1.0]),
            ablations=[tokens([-1.0])],
        )


def test_important_memories_are_ranked_and_thresholded() -> None:
    score = MemoryScore(
        memory_keys=("a", "b", "c"),
        memory_entry_indices=(0, 1, 2),
        response_entry_indices=(3,),
        response_token_counts=(4,),
        matrix=np.array([[0.5], [0.005], [2.0]]),
    )
    assert score.important_memories_for_entry(3) == [("c", 2.0), ("a", 0.5)]
    assert score.memory_weights == [("a", 0.5), ("b", 0.005), ("c", 2.0)]
    with pytest.raises(KeyError):
        score.important_memories_for_entry(0)


@st.composite
def conversations(
    draw: st.DrawFn,
) -> tuple[list[int], list[int], ResponseTokens, list[ResponseTokens]]:
    n_entries = draw(st.integers(2, 12))
    roles = draw(st.lists(st.booleans(), min_size=n_entries, max_size=n_entries))
    memories = [i for i, is_memory in enumerate(roles) if is_memory]
    responses = [i for i, is_memory in enumerate(roles) if not is_memory]
    lengths = [draw(st.integers(0, 6)) for _ in responses]
    logprob = st.floats(-30.0, 0.0, allow_nan=False)

    def draw_tokens() -> ResponseTokens:
        return tokens(
            *[draw(hnp.arrays(np.float64, n, elements=logprob)).tolist() for n in lengths]
        )

    return memories, responses, draw_tokens(), [draw_tokens() for _ in memories]


@settings(max_examples=200, deadline=None)
@given(conversations(), st.floats(0.0, 2.0))
def test_matrix_invariants(
    conversation: tuple[list[int], list[int], ResponseTokens, list[ResponseTokens]], floor: float
) -> None:
    memories, responses, baseline, ablations = conversation
    score = build_memory_score(
        memory_keys=[f"m{i}" for i in memories],
        memory_entry_indices=memories,
        response_entry_indices=responses,
        baseline=baseline,
        ablations=ablations,
        noise_floor=floor,
    )
    assert score.matrix.shape == (len(memories), len(responses))
    assert (score.matrix >= 0).all()
    for i, memory_entry in enumerate(memories):
        for j, response_entry in enumerate(responses):
            if response_entry < memory_entry:
                assert score.matrix[i, j] == 0.0
    assert [w for _, w in score.memory_weights] == pytest.approx(score.matrix.sum(axis=1).tolist())
    assert score.response_scores == pytest.approx(score.matrix.sum(axis=0).tolist())
    assert sum(w for _, w in score.memory_weights) == pytest.approx(sum(score.response_scores))


@settings(max_examples=100, deadline=None)
@given(conversations())
def test_identical_ablations_score_zero(
    conversation: tuple[list[int], list[int], ResponseTokens, list[ResponseTokens]],
) -> None:
    memories, responses, baseline, _ = conversation
    score = build_memory_score(
        memory_keys=[f"m{i}" for i in memories],
        memory_entry_indices=memories,
        response_entry_indices=responses,
        baseline=baseline,
        ablations=[baseline] * len(memories),
        metric="net",
    )
    assert not score.matrix.any()
