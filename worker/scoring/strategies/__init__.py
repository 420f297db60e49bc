"""Scoring strategies: which memories each request leaves out, and how the answers become
a MemoryScore. Pure numpy; worker/inference/scorer.py sends what they plan.

- ``loo``: exact leave-one-out, one request per memory (the default and the reference).
- ``hierarchical``: groups of adjacent memories, refined only where something moved.
- ``surrogate``: a fixed number of random ablations and a sparse linear fit.
- ``hybrid``: the surrogate's ablations find the memories that matter, LOO measures them.
- ``auto``: LOO when it fits the prompt-token cap, else the cheaper one for that size.
"""

from __future__ import annotations

from typing import Literal

from worker.scoring.strategies.auto import Auto
from worker.scoring.strategies.base import (
    BASELINE,
    Ablation,
    Answers,
    Conversation,
    Strategy,
    event_seed,
)
from worker.scoring.strategies.hierarchical import Hierarchical
from worker.scoring.strategies.hybrid import Hybrid
from worker.scoring.strategies.loo import LeaveOneOut
from worker.scoring.strategies.surrogate import Surrogate
from worker.settings import Settings

StrategySetting = Literal["loo", "hierarchical", "surrogate", "hybrid", "auto"]


def strategy_from_settings(settings: Settings, name: StrategySetting | None = None) -> Strategy:
    """The strategy ``name`` (default: MEMSCORE_STRATEGY) with its knobs from the settings."""
    hierarchical = Hierarchical(
        threshold=settings.hierarchical_threshold, branching=settings.hierarchical_branching
    )
    surrogate = Surrogate(
        ablations=settings.surrogate_ablations,
        removal_probability=settings.surrogate_removal_probability,
        alpha_ratio=settings.surrogate_alpha_ratio,
    )
    hybrid = Hybrid(
        surrogate=Surrogate(
            ablations=settings.hybrid_masks,
            removal_probability=settings.surrogate_removal_probability,
            alpha_ratio=settings.surrogate_alpha_ratio,
        ),
        refine_share=settings.hybrid_refine_share,
    )
    chosen = name or settings.strategy
    if chosen == "loo":
        return LeaveOneOut()
    if chosen == "hierarchical":
        return hierarchical
    if chosen == "surrogate":
        return surrogate
    if chosen == "hybrid":
        return hybrid
    return Auto(hierarchical=hierarchical, surrogate=surrogate, hybrid=hybrid)


__all__ = [
    "BASELINE",
    "Ablation",
    "Answers",
    "Auto",
    "Conversation",
    "Hierarchical",
    "Hybrid",
    "LeaveOneOut",
    "Strategy",
    "StrategySetting",
    "Surrogate",
    "event_seed",
    "strategy_from_settings",
]
