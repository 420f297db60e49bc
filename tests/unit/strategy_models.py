"""Fake answers for the pure strategy tests: small models of how memories support responses.

A model maps an ablation (the memory positions left out) to ResponseTokens. Running a
strategy against one is the executor's loop without the network (``run``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from worker.scoring import MemoryScore, ResponseTokens
from worker.scoring.strategies import BASELINE, Ablation, Conversation, Strategy

Model = Callable[[Ablation], ResponseTokens]
KNOWN, UNKNOWN = -0.1, -5.0


def conversation(
    memory_entries: Sequence[int],
    response_entries: Sequence[int],
    *,
    seed: int = 7,
    request_budget: int | None = None,
    metric: str = "drop",
) -> Conversation:
    return Conversation(
        memory_keys=tuple(f"m{p}" for p in range(len(memory_entries))),
        memory_entry_indices=tuple(memory_entries),
        response_entry_indices=tuple(response_entries),
        metric=metric,  # type: ignore[arg-type]
        seed=seed,
        request_budget=request_budget,
    )


def flat(memories: int, responses: int) -> Conversation:
    """Every memory first, then the responses (each after a user turn)."""
    return conversation(range(memories), [memories + 1 + 2 * j for j in range(responses)])


@dataclass(frozen=True)
class SupportModel:
    """Each response token is likely (KNOWN) while any of its supporters is kept.

    ``supporters[j][t]`` is the set of memory positions token t of response j rests on
    (empty: it rests on none). Leaving out more memories never raises a logprob, so a
    group's divergence is at least each of its members'.
    """

    supporters: Sequence[Sequence[frozenset[int]]]

    def __call__(self, ablation: Ablation) -> ResponseTokens:
        logprobs = [
            np.array(
                [KNOWN if not support or support - ablation else UNKNOWN for support in tokens],
                dtype=np.float64,
            )
            for tokens in self.supporters
        ]
        return ResponseTokens(
            token_ids=[np.arange(len(lp), dtype=np.int64) for lp in logprobs], logprobs=logprobs
        )


@dataclass(frozen=True)
class AdditiveModel:
    """Token t of response j loses ``effects[j][t]`` nats when memory ``owners[j][t]`` is out.

    Every token rests on at most one memory (owner -1: none), so what leaving out a set
    costs a response is exactly the sum of what leaving out each member costs it.
    """

    owners: Sequence[Sequence[int]]
    effects: Sequence[Sequence[float]]

    def __call__(self, ablation: Ablation) -> ResponseTokens:
        logprobs = [
            np.array(
                [-0.5 - (e if o in ablation else 0.0) for o, e in zip(own, eff, strict=True)],
                dtype=np.float64,
            )
            for own, eff in zip(self.owners, self.effects, strict=True)
        ]
        return ResponseTokens(
            token_ids=[np.arange(len(lp), dtype=np.int64) for lp in logprobs], logprobs=logprobs
        )


@dataclass
class Run:
    score: MemoryScore
    sent: list[Ablation]


def run(strategy: Strategy, conv: Conversation, model: Model, *, budget: int | None = None) -> Run:
    """Plan, answer and score as the executor does; ``budget`` caps ablation requests."""
    answers = {BASELINE: model(BASELINE)}
    sent: list[Ablation] = []
    while True:
        left = 1 << 30 if budget is None else budget - len(sent)
        ablations = strategy.plan(conv, answers, max(0, left))
        if not ablations:
            break
        assert len(ablations) <= max(0, left)
        for ablation in ablations:
            assert ablation not in answers
            answers[ablation] = model(ablation)
        sent += ablations
    return Run(strategy.score(conv, answers), sent)
