"""Auto: exact leave-one-out whenever it fits the cap, else the cheaper strategy that the
fidelity benchmark (`python -m bench strategies`, BENCHMARKS.md) found most faithful.

Without a cap LOO always fits, so auto is LOO. With one, a conversation whose LOO would
not fit gets the surrogate (its masks, or as many as the cap allows) when it has at least
SURROGATE_FROM_MEMORIES memories worth a request, and the hierarchy below that. Either is
bounded by the cap, which is then below LOO's cost: auto never spends more than LOO.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.scoring.memory_score import MemoryScore
from worker.scoring.strategies.base import Ablation, Answers, Conversation, Strategy
from worker.scoring.strategies.hierarchical import Hierarchical
from worker.scoring.strategies.loo import LeaveOneOut
from worker.scoring.strategies.surrogate import Surrogate

#: From the benchmark: below this many memories the hierarchy beats the surrogate.
SURROGATE_FROM_MEMORIES = 16


@dataclass(frozen=True)
class Auto:
    hierarchical: Hierarchical = field(default_factory=Hierarchical)
    surrogate: Surrogate = field(default_factory=Surrogate)
    loo: LeaveOneOut = field(default_factory=LeaveOneOut)
    name = "auto"

    def choose(self, conversation: Conversation) -> Strategy:
        memories = len(conversation.scorable)
        budget = conversation.request_budget
        if budget is None or budget >= memories:
            return self.loo
        if memories >= SURROGATE_FROM_MEMORIES:
            return self.surrogate
        return self.hierarchical

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        return self.choose(conversation).plan(conversation, answers, budget)

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        return self.choose(conversation).score(conversation, answers)
