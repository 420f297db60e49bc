"""Auto: exact leave-one-out whenever it fits the cap, else the cheaper strategy that the
fidelity benchmark (`python -m bench strategies`, BENCHMARKS.md) found most faithful.

Without a cap LOO always fits, so auto is LOO. With one, a conversation whose LOO would
not fit and has at least SURROGATE_FROM_MEMORIES memories worth a request gets the
hybrid (surrogate masks, then exact rows for the memories they point at) when the cap
allows it at least HYBRID_FROM_REQUESTS requests or more than half as many as there are
memories, and the surrogate otherwise; one with fewer memories gets the hierarchy. The
hybrid's fidelity rests on its request budget more than on N: it needs its masks (16)
and a request per candidate (about 8 to 10 on the benchmark's conversations), or, with
few memories, enough requests to measure most of them exactly.

Auto never spends more than LOO. LOO sends the baseline (L tokens) and one ablation per
memory, each L minus that memory's tokens; the memories are part of the baseline, so
LOO costs more than (N + 1) L - L = N L. Whatever auto chooses instead sends at most
N - 1 ablations, each at most L: at most N L in all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from worker.scoring.memory_score import MemoryScore
from worker.scoring.strategies.base import Ablation, Answers, Conversation, Strategy
from worker.scoring.strategies.hierarchical import Hierarchical
from worker.scoring.strategies.hybrid import Hybrid
from worker.scoring.strategies.loo import LeaveOneOut
from worker.scoring.strategies.surrogate import Surrogate

#: From the benchmark (40% cap): below this many memories the hierarchy beats the surrogate.
SURROGATE_FROM_MEMORIES = 16
#: From the benchmark's sweep of N and caps (BENCHMARKS.md): with at least 15 requests,
#: or more than N / 2, the hybrid was at least as faithful as the surrogate wherever it
#: ran; with fewer it did worse (its few masks find the wrong candidates).
HYBRID_FROM_REQUESTS = 15


@dataclass(frozen=True)
class Auto:
    hierarchical: Hierarchical = field(default_factory=Hierarchical)
    surrogate: Surrogate = field(default_factory=Surrogate)
    hybrid: Hybrid = field(default_factory=Hybrid)
    loo: LeaveOneOut = field(default_factory=LeaveOneOut)
    name = "auto"

    def choose(self, conversation: Conversation) -> Strategy:
        memories = len(conversation.scorable)
        budget = conversation.request_budget
        if budget is None or budget >= memories:
            return self.loo
        if memories >= SURROGATE_FROM_MEMORIES:
            if budget >= HYBRID_FROM_REQUESTS or 2 * budget > memories:
                return self.hybrid
            return self.surrogate
        return self.hierarchical

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        chosen = self.choose(conversation)
        if chosen is not self.loo:
            # Fewer ablations than LOO's, so never more tokens (see the module's docstring).
            budget = min(budget, len(conversation.scorable) - len(answers))
        return chosen.plan(conversation, answers, max(0, budget))

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        return self.choose(conversation).score(conversation, answers)
