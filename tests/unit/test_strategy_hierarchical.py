"""The `hierarchical` strategy: groups of adjacent memories, refined where something moved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.strategy_models import SupportModel, flat, run
from worker.scoring.strategies import Hierarchical, LeaveOneOut


def one_used(memories: int, used: int, tokens: int = 3) -> SupportModel:
    """One response whose every token rests on memory ``used`` alone."""
    return SupportModel([[frozenset({used})] * tokens])


def test_one_used_memory_among_sixteen_costs_two_requests_per_level() -> None:
    result = run(Hierarchical(threshold=1.0), flat(16, 1), one_used(16, 5))
    assert len(result.sent) == 2 * 4  # 16 -> 8 -> 4 -> 2 -> 1, two groups a level


def test_the_used_memory_gets_its_exact_loo_row() -> None:
    model = one_used(16, 5)
    result = run(Hierarchical(threshold=1.0), flat(16, 1), model)
    reference = run(LeaveOneOut(), flat(16, 1), model)
    assert (result.score.row_kinds[5], result.score.matrix[5].tolist()) == (
        "exact",
        reference.score.matrix[5].tolist(),
    )


def test_memories_in_groups_that_moved_nothing_are_pruned_with_zero_rows() -> None:
    result = run(Hierarchical(threshold=1.0), flat(16, 1), one_used(16, 5))
    pruned = [p for p, kind in enumerate(result.score.row_kinds) if kind == "pruned"]
    # 16 -> [0-7] moved, [8-15] did not; [0-3] did not, [4-7] did; [4, 5] did, [6, 7] not
    assert (pruned, result.score.matrix[pruned].sum()) == ([0, 1, 2, 3, 6, 7, *range(8, 16)], 0.0)


def test_a_group_moving_a_response_by_no_more_than_the_threshold_is_not_split() -> None:
    # leaving out memory 5 costs the response 3 tokens x 4.9 nats = 14.7 nats
    result = run(Hierarchical(threshold=15.0), flat(16, 1), one_used(16, 5))
    assert (len(result.sent), set(result.score.row_kinds)) == (2, {"pruned"})


def test_a_redundant_pair_is_split_and_each_half_scores_zero_as_in_loo() -> None:
    # every token rests on memory 2 or memory 3: leaving out one of them changes nothing
    model = SupportModel([[frozenset({2, 3})] * 3])
    result = run(Hierarchical(threshold=1.0), flat(4, 1), model)
    assert result.score.matrix[[2, 3]].tolist() == [[0.0], [0.0]]


@pytest.mark.parametrize("branching", [2, 3, 4])
def test_the_first_round_splits_the_memories_into_branching_groups(branching: int) -> None:
    result = run(Hierarchical(branching=branching), flat(12, 1), one_used(12, 0), budget=branching)
    assert sorted(len(group) for group in result.sent) == [12 // branching] * branching


def test_under_a_cap_an_unrefined_group_shares_its_row_among_its_members() -> None:
    result = run(Hierarchical(threshold=1.0), flat(16, 1), one_used(16, 5), budget=2)
    kinds, matrix = result.score.row_kinds, result.score.matrix
    # [0-7] moved by 3 x 4.9 nats, and no request was left to split it
    assert (kinds[:8], matrix[:8, 0].sum()) == (("estimated",) * 8, pytest.approx(14.7))


def test_under_a_cap_the_refined_groups_children_are_estimated_and_the_score_capped() -> None:
    result = run(Hierarchical(threshold=1.0), flat(16, 1), one_used(16, 5), budget=3)
    # sent: [0-7], [8-15], then [0-3] only; [4-7] inherits half of [0-7]'s row
    assert (result.score.row_kinds[4:8], result.score.capped) == (("estimated",) * 4, True)


# --- at threshold 0 it is leave-one-out ---------------------------------------------


@st.composite
def support_models(draw: st.DrawFn) -> tuple[int, int, SupportModel]:
    memories = draw(st.integers(1, 12))
    responses = draw(st.integers(1, 3))
    support = st.frozensets(st.integers(0, memories - 1), max_size=3)
    tokens = [draw(st.lists(support, min_size=1, max_size=4)) for _ in range(responses)]
    return memories, responses, SupportModel(tokens)


@settings(max_examples=150, deadline=None)
@given(case=support_models(), branching=st.integers(2, 4))
def test_at_threshold_zero_the_matrix_is_loos(
    case: tuple[int, int, SupportModel], branching: int
) -> None:
    memories, responses, model = case
    conv = flat(memories, responses)
    actual = run(Hierarchical(threshold=0.0, branching=branching), conv, model).score
    expected = run(LeaveOneOut(), conv, model).score
    assert np.array_equal(actual.matrix, expected.matrix)


@settings(max_examples=100, deadline=None)
@given(case=support_models())
def test_every_row_it_calls_exact_is_loos_row(case: tuple[int, int, SupportModel]) -> None:
    memories, responses, model = case
    conv = flat(memories, responses)
    actual = run(Hierarchical(threshold=3.0), conv, model).score
    expected = run(LeaveOneOut(), conv, model).score
    exact = [p for p, kind in enumerate(actual.row_kinds) if kind == "exact"]
    assert np.array_equal(actual.matrix[exact], expected.matrix[exact])
