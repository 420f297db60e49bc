"""Strategy settings: from the environment to the strategy the scorer runs."""

from __future__ import annotations

import pytest

from worker.errors import FatalError
from worker.inference.scorer import ScoringOptions
from worker.scoring.strategies import Auto, Hierarchical, Hybrid, LeaveOneOut, Surrogate
from worker.settings import load_settings


def test_the_default_is_exact_leave_one_out_without_a_cap() -> None:
    options = ScoringOptions.from_settings(load_settings())
    assert (options.strategy, options.max_prompt_tokens) == (LeaveOneOut(), None)


def test_the_strategy_and_its_knobs_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MEMSCORE_STRATEGY", "surrogate")
    monkeypatch.setenv("MEMSCORE_SURROGATE_ABLATIONS", "48")
    monkeypatch.setenv("MEMSCORE_SURROGATE_REMOVAL_PROBABILITY", "0.3")
    options = ScoringOptions.from_settings(load_settings())
    assert options.strategy == Surrogate(ablations=48, removal_probability=0.3)


def test_hierarchical_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_STRATEGY", "hierarchical")
    monkeypatch.setenv("MEMSCORE_HIERARCHICAL_THRESHOLD", "2.5")
    monkeypatch.setenv("MEMSCORE_HIERARCHICAL_BRANCHING", "4")
    options = ScoringOptions.from_settings(load_settings())
    assert options.strategy == Hierarchical(threshold=2.5, branching=4)


def test_hybrid_knobs_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_STRATEGY", "hybrid")
    monkeypatch.setenv("MEMSCORE_HYBRID_MASKS", "24")
    monkeypatch.setenv("MEMSCORE_HYBRID_REFINE_SHARE", "0.05")
    monkeypatch.setenv("MEMSCORE_SURROGATE_ALPHA_RATIO", "0.02")
    options = ScoringOptions.from_settings(load_settings())
    assert options.strategy == Hybrid(
        surrogate=Surrogate(ablations=24, alpha_ratio=0.02), refine_share=0.05
    )


def test_auto_carries_the_configured_strategies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMSCORE_STRATEGY", "auto")
    monkeypatch.setenv("MEMSCORE_MAX_PROMPT_TOKENS_PER_CONVERSATION", "100000")
    options = ScoringOptions.from_settings(load_settings())
    assert (options.strategy, options.max_prompt_tokens) == (Auto(), 100_000)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MEMSCORE_STRATEGY", "fastest"),
        ("MEMSCORE_MAX_PROMPT_TOKENS_PER_CONVERSATION", "0"),
        ("MEMSCORE_HIERARCHICAL_BRANCHING", "1"),
        ("MEMSCORE_SURROGATE_REMOVAL_PROBABILITY", "1"),
        ("MEMSCORE_HYBRID_MASKS", "0"),
        ("MEMSCORE_HYBRID_REFINE_SHARE", "2"),
    ],
)
def test_a_bad_strategy_setting_is_fatal_and_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(FatalError, match=variable):
        load_settings()
