"""The `surrogate` strategy: seeded random ablations and a sparse linear fit per response."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.strategy_models import AdditiveModel, SupportModel, conversation, flat, run
from worker.scoring.strategies import LeaveOneOut, Surrogate, event_seed

# --- what it sends ------------------------------------------------------------------


def test_it_sends_its_fixed_number_of_ablations_whatever_the_number_of_memories() -> None:
    model = SupportModel([[frozenset({0})]])
    assert len(run(Surrogate(ablations=12), flat(64, 1), model).sent) == 12


def test_the_same_seed_gives_the_same_ablations() -> None:
    strategy = Surrogate(ablations=8)
    assert strategy.masks(flat(20, 1)) == strategy.masks(flat(20, 1))


def test_another_event_gets_other_ablations() -> None:
    strategy = Surrogate(ablations=8)
    first = conversation(range(20), [21], seed=event_seed("evt-1", None))
    second = conversation(range(20), [21], seed=event_seed("evt-2", None))
    assert strategy.masks(first) != strategy.masks(second)


def test_the_seed_depends_on_the_events_source_too() -> None:
    assert event_seed("42", "agent-a") != event_seed("42", "agent-b")


def test_about_the_removal_probability_of_memories_is_left_out() -> None:
    masks = Surrogate(ablations=200, removal_probability=0.3).masks(flat(50, 1))
    assert np.mean([len(mask) for mask in masks]) / 50 == pytest.approx(0.3, abs=0.02)


def test_a_memory_after_the_last_response_is_never_left_out_and_is_skipped() -> None:
    conv = conversation([0, 1, 9], [5])
    result = run(Surrogate(ablations=16), conv, SupportModel([[frozenset({0})]]))
    assert (any(2 in mask for mask in result.sent), result.score.row_kinds) == (
        False,
        ("estimated", "estimated", "skipped"),
    )


def test_under_a_cap_it_sends_the_first_masks_and_says_it_was_capped() -> None:
    strategy = Surrogate(ablations=16)
    result = run(strategy, flat(20, 1), SupportModel([[frozenset({0})]]), budget=5)
    assert (result.sent, result.score.capped) == (strategy.masks(flat(20, 1))[:5], True)


# --- what it estimates -----------------------------------------------------------------


@st.composite
def additive_models(draw: st.DrawFn) -> tuple[int, int, AdditiveModel]:
    memories = draw(st.integers(2, 10))
    responses = draw(st.integers(1, 3))
    owners = [
        draw(st.lists(st.integers(-1, memories - 1), min_size=1, max_size=5))
        for _ in range(responses)
    ]
    effects = [
        draw(st.lists(st.floats(0.5, 9.0), min_size=len(own), max_size=len(own))) for own in owners
    ]
    return memories, responses, AdditiveModel(owners, effects)


@settings(max_examples=100, deadline=None)
@given(case=additive_models(), seed=st.integers(0, 2**63))
def test_on_an_additive_model_without_penalty_it_recovers_loo(
    case: tuple[int, int, AdditiveModel], seed: int
) -> None:
    memories, responses, model = case
    conv = conversation(range(memories), [memories + 1 + j for j in range(responses)], seed=seed)
    surrogate = Surrogate(ablations=8 * memories + 24, alpha_ratio=0.0)
    actual = run(surrogate, conv, model).score.matrix
    expected = run(LeaveOneOut(), conv, model).score.matrix
    assert np.allclose(actual, expected, atol=1e-6)


def test_its_default_penalty_still_ranks_the_used_memory_first() -> None:
    model = AdditiveModel([[3, 3, 7, -1]], [[5.0, 4.0, 1.0, 0.0]])
    result = run(Surrogate(ablations=24), flat(16, 1), model)
    assert int(np.argmax(result.score.matrix[:, 0])) == 3


def test_a_redundant_pair_shares_the_effect_loo_gives_to_neither() -> None:
    model = SupportModel([[frozenset({2, 3})] * 4])  # 4 tokens x 4.9 nats if both are out
    result = run(Surrogate(ablations=200, alpha_ratio=0.0), flat(6, 1), model)
    assert result.score.matrix[[2, 3], 0] == pytest.approx([4.9 * 2, 4.9 * 2], abs=1.5)


def test_responses_before_a_memory_get_exactly_zero_from_it() -> None:
    conv = conversation([0, 3], [2, 5])  # memory 1 comes between the responses
    model = SupportModel([[frozenset({0})], [frozenset({1})]])
    result = run(Surrogate(ablations=16), conv, model)
    assert result.score.matrix[1, 0] == 0.0


def test_estimates_under_the_drop_metric_are_never_negative() -> None:
    model = AdditiveModel([[0, 1, 2, 3]], [[3.0, 2.0, 1.0, 0.5]])
    result = run(Surrogate(ablations=12), flat(8, 1), model)
    assert (result.score.matrix >= 0).all()
