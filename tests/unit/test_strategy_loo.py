"""The `loo` strategy: the same matrix as the reference build, and the free savings."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.strategy_models import SupportModel, conversation, flat, run
from worker.scoring import ResponseTokens, build_memory_score
from worker.scoring.strategies import LeaveOneOut

# --- bit-identical to the reference ------------------------------------------------------


@st.composite
def conversations_with_answers(draw: st.DrawFn) -> tuple[object, ...]:
    """Entries in a random order, random logprobs for the baseline and every ablation."""
    kinds = draw(st.lists(st.sampled_from(["memory", "response"]), min_size=2, max_size=14))
    memories = [i for i, kind in enumerate(kinds) if kind == "memory"]
    responses = [i for i, kind in enumerate(kinds) if kind == "response"]
    lengths = [draw(st.integers(0, 5)) for _ in responses]
    floats = st.floats(-30.0, 0.0, allow_nan=False)

    def answer() -> ResponseTokens:
        logprobs = [np.array(draw(st.lists(floats, min_size=n, max_size=n))) for n in lengths]
        return ResponseTokens([np.arange(n, dtype=np.int64) for n in lengths], logprobs)

    return memories, responses, answer(), [answer() for _ in memories]


@settings(max_examples=150, deadline=None)
@given(case=conversations_with_answers(), metric=st.sampled_from(["drop", "net"]))
def test_loo_matrix_is_bit_identical_to_the_reference_build(
    case: tuple[object, ...], metric: str
) -> None:
    memories, responses, baseline, ablations = case
    assert isinstance(memories, list)
    assert isinstance(responses, list)
    assert isinstance(baseline, ResponseTokens)
    assert isinstance(ablations, list)
    conv = conversation(memories, responses, metric=metric)
    answers = {frozenset(): baseline, **{frozenset({p}): a for p, a in enumerate(ablations)}}

    actual = LeaveOneOut().score(conv, answers)
    expected = build_memory_score(
        memory_keys=conv.memory_keys,
        memory_entry_indices=memories,
        response_entry_indices=responses,
        baseline=baseline,
        ablations=ablations,
        metric=metric,  # type: ignore[arg-type]
    )

    assert actual.matrix.tobytes() == expected.matrix.tobytes()


def test_loo_asks_for_one_ablation_per_memory() -> None:
    model = SupportModel([[frozenset({0}), frozenset({2})]])
    result = run(LeaveOneOut(), flat(3, 1), model)
    assert sorted(tuple(a) for a in result.sent) == [(0,), (1,), (2,)]


def test_loo_rows_are_exact() -> None:
    model = SupportModel([[frozenset({0}), frozenset({2})]])
    result = run(LeaveOneOut(), flat(3, 1), model)
    assert (result.score.row_kinds, result.score.strategy, result.score.capped) == (
        ("exact", "exact", "exact"),
        "loo",
        False,
    )


# --- free savings -------------------------------------------------------------------------


def test_memory_after_the_last_response_gets_no_request() -> None:
    conv = conversation([0, 3], [2])  # memory 1 comes after the only response
    result = run(LeaveOneOut(), conv, SupportModel([[frozenset({0})]]))
    assert result.sent == [frozenset({0})]


def test_memory_after_the_last_response_is_skipped_with_an_exact_zero_row() -> None:
    conv = conversation([0, 3], [2])
    result = run(LeaveOneOut(), conv, SupportModel([[frozenset({0})]]))
    assert (result.score.row_kinds[1], result.score.matrix[1].tolist()) == ("skipped", [0.0])


def test_skipped_rows_keep_the_score_exact() -> None:
    conv = conversation([0, 3], [2])
    result = run(LeaveOneOut(), conv, SupportModel([[frozenset({0})]]))
    assert result.score.exact


# --- under a cap -------------------------------------------------------------------------


def test_loo_under_a_cap_measures_memories_in_order_and_leaves_the_rest_unscored() -> None:
    model = SupportModel([[frozenset({0}), frozenset({2})]])
    result = run(LeaveOneOut(), flat(3, 1), model, budget=2)
    assert result.score.row_kinds == ("exact", "exact", "unscored")


def test_loo_under_a_cap_says_it_was_capped() -> None:
    model = SupportModel([[frozenset({0}), frozenset({2})]])
    result = run(LeaveOneOut(), flat(3, 1), model, budget=2)
    assert (result.score.capped, result.score.exact) == (True, False)
