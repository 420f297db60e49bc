"""The `hybrid` strategy: surrogate masks find the memories that matter, LOO measures them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.strategy_models import SupportModel, conversation, flat, run
from worker.scoring.strategies import BASELINE, Hybrid, LeaveOneOut, Surrogate


def sparse_model(memories: int) -> SupportModel:
    """Three responses over ``memories``: one fact, a two-memory answer, a redundant pair."""
    a, b, c, d, e = 3, memories // 3, memories // 2, memories - 5, memories - 2
    return SupportModel(
        [
            [frozenset({a})] * 3 + [frozenset()] * 2,
            [frozenset({b})] * 2 + [frozenset({c})] * 2,
            [frozenset({d, e})] * 3,  # either memory carries the fact
        ]
    )


# --- what it sends ------------------------------------------------------------------


def test_it_sends_its_masks_then_one_ablation_per_candidate() -> None:
    strategy = Hybrid(surrogate=Surrogate(ablations=16))
    conv = flat(64, 3)
    result = run(strategy, conv, sparse_model(64))
    masks = strategy.surrogate.masks(conv)
    refined = result.sent[len(masks) :]
    assert result.sent[: len(masks)] == masks
    assert all(len(ablation) == 1 for ablation in refined)
    assert len(result.sent) < 65 * 0.4  # 16 masks and a handful of candidates, not 64


def test_under_a_cap_half_the_requests_find_candidates_and_the_rest_measure_them() -> None:
    strategy = Hybrid(surrogate=Surrogate(ablations=16))
    conv = conversation(range(64), [65, 67, 69], request_budget=10)
    result = run(strategy, conv, sparse_model(64), budget=10)
    masks = strategy.surrogate.masks(conv)
    assert result.sent[:5] == masks[:5]
    assert len(result.sent) <= 10
    sent_masks = [a for a in result.sent if a in masks]
    assert sent_masks == masks[: len(sent_masks)]  # in order
    assert result.sent[: len(sent_masks)] == sent_masks  # and all before any single
    assert all(len(a) == 1 for a in result.sent[len(sent_masks) :])
    assert result.score.capped


def test_requests_spare_over_the_candidates_buy_the_rest_of_the_masks_first() -> None:
    # 28 requests: 14 masks in round 1 and 9 candidates to measure; the spare buys the
    # last two masks. (The uncapped hybrid sends 16 masks and 9 singles.)
    strategy = Hybrid(surrogate=Surrogate(ablations=16))
    conv = conversation(range(64), [65, 67, 69], request_budget=28)
    capped = run(strategy, conv, sparse_model(64), budget=28)
    free = run(strategy, flat(64, 3), sparse_model(64))
    masks = strategy.surrogate.masks(conv)
    assert len(strategy.masks(conv)) == 14
    assert capped.sent[:16] == masks
    assert all(len(a) == 1 for a in capped.sent[16:])
    # With every mask and every candidate answered, it is the uncapped hybrid's score.
    assert not capped.score.capped
    assert np.array_equal(capped.score.matrix, free.score.matrix)


def test_no_more_masks_once_refinement_has_begun() -> None:
    strategy = Hybrid(surrogate=Surrogate(ablations=16))
    conv = conversation(range(64), [65, 67, 69], request_budget=12)
    model = sparse_model(64)
    first = strategy.masks(conv)
    answers = {BASELINE: model(BASELINE)} | {m: model(m) for m in first if m}
    candidates = strategy.candidates(conv, strategy.surrogate.estimate(conv, answers, first))
    refined = frozenset({candidates[0]})
    answers[refined] = model(refined)
    plan = strategy.plan(conv, answers, budget=50)
    assert plan
    assert all(len(a) == 1 and a != refined for a in plan)


def test_the_candidates_are_measured_largest_estimate_first() -> None:
    strategy = Hybrid()
    conv = flat(64, 3)
    model = sparse_model(64)
    masks = strategy.masks(conv)
    answers = {BASELINE: model(BASELINE)} | {mask: model(mask) for mask in masks if mask}
    estimate = strategy.surrogate.estimate(conv, answers, masks)
    assert estimate is not None
    importance = np.abs(estimate).sum(axis=1)

    refined = [next(iter(a)) for a in run(strategy, conv, model).sent[len(masks) :]]

    assert refined == strategy.candidates(conv, estimate)
    assert list(importance[refined]) == sorted(importance[refined], reverse=True)
    assert set(refined) >= {3, 64 // 3, 64 // 2}


def test_a_memory_after_the_last_response_is_never_left_out_and_is_skipped() -> None:
    conv = conversation([0, 1, 9], [5])
    result = run(Hybrid(), conv, SupportModel([[frozenset({0})]]))
    assert not any(2 in ablation for ablation in result.sent)
    assert result.score.row_kinds[2] == "skipped"


def test_even_with_no_share_threshold_a_memory_after_the_last_response_costs_nothing() -> None:
    conv = conversation([0, 1, 2, 3, 4, 5, 20, 21], [10])
    model = SupportModel([[frozenset({0}), frozenset({4})]])
    result = run(Hybrid(refine_share=0.0), conv, model)
    assert not any(ablation & {6, 7} for ablation in result.sent)
    assert result.score.row_kinds[6:] == ("skipped", "skipped")


@pytest.mark.parametrize(("budget", "masks"), [(1, 1), (2, 1), (3, 2), (10, 5), (11, 6)])
def test_under_a_cap_the_masks_take_half_the_requests_rounded_up(budget: int, masks: int) -> None:
    strategy = Hybrid(surrogate=Surrogate(ablations=16))
    conv = conversation(range(40), [41], request_budget=budget)
    assert len(strategy.masks(conv)) == masks


def test_a_redelivered_event_sends_the_same_requests() -> None:
    conv = flat(40, 3)
    first = run(Hybrid(), conv, sparse_model(40)).sent
    assert run(Hybrid(), conv, sparse_model(40)).sent == first


# --- what it scores -------------------------------------------------------------------


def test_the_memories_that_matter_get_their_exact_loo_rows() -> None:
    conv = flat(64, 3)
    model = sparse_model(64)
    hybrid = run(Hybrid(), conv, model).score
    loo = run(LeaveOneOut(), conv, model).score
    used = [3, 64 // 3, 64 // 2]
    assert [hybrid.row_kinds[p] for p in used] == ["exact"] * 3
    assert np.array_equal(hybrid.matrix[used], loo.matrix[used])
    assert (hybrid.strategy, hybrid.capped) == ("hybrid", False)
    tops = [int(np.argmax(hybrid.matrix[:, j])) for j in range(2)]
    assert tops == [int(np.argmax(loo.matrix[:, j])) for j in range(2)]


def test_a_redundant_pair_gets_loo_rows_not_the_surrogates_shared_effect() -> None:
    conv = flat(64, 3)
    model = sparse_model(64)
    hybrid = run(Hybrid(), conv, model).score
    surrogate = run(Surrogate(ablations=16), conv, model).score
    pair = [64 - 5, 64 - 2]
    assert surrogate.matrix[pair, 2].sum() > 5  # the fit shares the pair's joint effect
    assert [hybrid.row_kinds[p] for p in pair] == ["exact", "exact"]
    assert hybrid.matrix[pair, 2].tolist() == [0.0, 0.0]  # as LOO: the other still says it


def test_unrefined_memories_keep_the_surrogates_estimate() -> None:
    conv = flat(32, 3)
    model = sparse_model(32)
    hybrid = run(Hybrid(), conv, model).score
    assert "estimated" in hybrid.row_kinds
    assert set(hybrid.row_kinds) <= {"exact", "estimated"}


def test_with_no_informative_mask_it_measures_every_memory() -> None:
    # One scorable memory and masks that (by this seed) all keep it: nothing to fit.
    strategy = Hybrid(surrogate=Surrogate(ablations=1, removal_probability=0.01))
    conv = conversation([0], [2], seed=1)
    assert strategy.surrogate.masks(conv) == [frozenset()]
    result = run(strategy, conv, SupportModel([[frozenset({0})]]))
    assert result.sent == [frozenset({0})]
    assert result.score.row_kinds == ("exact",)


@st.composite
def support_models(draw: st.DrawFn) -> tuple[int, SupportModel]:
    memories = draw(st.integers(2, 24))
    position = st.integers(0, memories - 1)
    support = st.frozensets(position, max_size=2)
    responses = draw(st.lists(st.lists(support, min_size=1, max_size=4), min_size=1, max_size=3))
    return memories, SupportModel(responses)


@settings(max_examples=100, deadline=None)
@given(case=support_models(), seed=st.integers(0, 2**63), budget=st.none() | st.integers(0, 30))
def test_every_exact_row_is_loos_and_the_cap_holds(
    case: tuple[int, SupportModel], seed: int, budget: int | None
) -> None:
    memories, model = case
    responses = len(model.supporters)
    conv = conversation(
        range(memories),
        [memories + 1 + 2 * j for j in range(responses)],
        seed=seed,
        request_budget=budget,
    )
    result = run(Hybrid(), conv, model, budget=budget)
    loo = run(LeaveOneOut(), conv, model).score
    exact = [p for p, kind in enumerate(result.score.row_kinds) if kind == "exact"]
    assert np.array_equal(result.score.matrix[exact], loo.matrix[exact])
    assert budget is None or len(result.sent) <= budget
    assert len(result.sent) <= 16 + memories
    # Masks first, in the surrogate's order (each once; an empty one is never sent), then
    # singles only: no mask is bought once refinement has begun (with few memories a mask
    # may be a single).
    masks = [m for m in dict.fromkeys(Hybrid().surrogate.masks(conv)) if m]
    run_of_masks = 0
    while run_of_masks < min(len(masks), len(result.sent)):
        if result.sent[run_of_masks] != masks[run_of_masks]:
            break
        run_of_masks += 1
    assert all(len(a) == 1 for a in result.sent[run_of_masks:])


def test_refine_share_must_be_a_share() -> None:
    with pytest.raises(ValueError, match="refine_share"):
        Hybrid(refine_share=1.5)
