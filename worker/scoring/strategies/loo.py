"""Exact leave-one-out: one ablation per memory. The default, and the reference the others
approximate.

Under a cap it measures the memories in conversation order while requests last; the rest
are ``unscored``.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.scoring.memory_score import MemoryScore
from worker.scoring.strategies.base import Ablation, Answers, Conversation, unanswered


@dataclass(frozen=True)
class LeaveOneOut:
    name = "loo"

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        return unanswered((frozenset({p}) for p in conversation.scorable), answers, budget)

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        matrix = conversation.zero_matrix()
        kinds = conversation.initial_kinds()
        for position in conversation.scorable:
            ablation = frozenset({position})
            if ablation in answers:
                matrix[position] = conversation.row(ablation, answers)
                kinds[position] = "exact"
        return conversation.memory_score(
            answers, matrix, kinds, strategy="loo", capped="unscored" in kinds
        )
