"""Hybrid: the surrogate's random ablations find the memories that matter, then each of
those gets its exact leave-one-out row.

Round 1 sends the surrogate's first seeded masks (all of its ``ablations``; under a cap,
half the requests the cap allows, rounded up) and fits its sparse linear model
(surrogate.py). The candidates are the memories whose estimated importance (the
absolute row sum) is at least ``refine_share`` of the estimated total, and each
response's ``per_response`` largest estimated entries. Under a cap, the budget left
over the candidates still to measure then buys the rest of the masks, and the fit and
the candidates are made again: the executor budgets every request at the baseline's
length, but a mask leaves out about half the memories, so round 1 usually spends less
than it was given (the fuller fit may name more candidates than are left requests for:
the largest come first, and the run says ``capped``). Once a candidate has been
measured no more masks are bought. The last rounds leave out each candidate alone,
largest estimate first, while the cap lasts: their rows are ``exact``. Every other
memory some response comes after keeps the surrogate's estimate (``estimated``): small,
since the fit found little of it, unless the cap ran out before its turn (the run then
says ``capped``).

So the rows that carry the importance are LOO's own (a redundant pair included: each
member gets its LOO row, ~0 when the other still carries the fact), and the cost is
masks + candidates requests whatever N is: at N = 64, 16 masks and 7-13 candidates cost
0.26-0.35 of LOO's prompt tokens with top-1 and Spearman 1.00 against LOO on the
benchmark (BENCHMARKS.md, "Scoring strategies"). A memory the fit missed (a zero
weight) is not refined: that is the estimate's one way to be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from worker.scoring.memory_score import MemoryScore, RowKind
from worker.scoring.strategies.base import (
    Ablation,
    Answers,
    Conversation,
    all_answered,
    unanswered,
)
from worker.scoring.strategies.surrogate import Surrogate


@dataclass(frozen=True)
class Hybrid:
    #: Finds the candidates: its ``ablations`` is the number of masks sent (16 by default).
    surrogate: Surrogate = field(default_factory=lambda: Surrogate(ablations=16))
    #: A memory whose estimated importance is at least this share of the total is refined.
    refine_share: float = 0.02
    #: And so are each response's this many largest estimated entries.
    per_response: int = 2
    name = "hybrid"

    def __post_init__(self) -> None:
        if not 0 <= self.refine_share <= 1 or self.per_response < 0:
            raise ValueError("0 <= refine_share <= 1 and per_response >= 0")

    def masks(self, conversation: Conversation) -> list[Ablation]:
        """Round 1's masks: under a cap, half its requests, rounded up."""
        masks = self.surrogate.masks(conversation)
        budget = conversation.request_budget
        if budget is not None:
            masks = masks[: max(1, budget - budget // 2)]
        return masks

    def fitted_masks(self, conversation: Conversation, answers: Answers) -> list[Ablation]:
        """The masks the fit uses: the longest answered run of the surrogate's, from the first.

        Masks are sent in order, round 1's and then more while the cap allows, so this is
        every mask sent; planning and scoring derive it alike from the answers alone.
        """
        return _answered_run(self.surrogate.masks(conversation), answers)

    def candidates(
        self, conversation: Conversation, estimate: npt.NDArray[np.float64] | None
    ) -> list[int]:
        """The memories to measure exactly, most important (by the estimate) first."""
        if estimate is None:  # no mask left anything out: nothing to rank by, measure all
            return list(conversation.scorable)
        scorable = np.array(conversation.scorable, dtype=np.intp)
        weights = np.abs(estimate[scorable])  # other rows are 0 and never worth a request
        importance = weights.sum(axis=1)
        total = float(importance.sum())
        if total <= 0:
            return []
        share = (importance >= self.refine_share * total) & (importance > 0)
        chosen = {int(i) for i in np.flatnonzero(share)}
        for column in weights.T:
            top = np.argsort(-column, kind="stable")[: self.per_response]
            chosen.update(int(i) for i in top if column[i] > 0)
        ranked = sorted(chosen, key=lambda i: (-importance[i], i))
        return [int(scorable[i]) for i in ranked]

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        first = self.masks(conversation)
        if not all_answered(first, answers):
            return unanswered(first, answers, budget)
        masks = self.surrogate.masks(conversation)
        fitted = _answered_run(masks, answers)
        estimate = self.surrogate.estimate(conversation, answers, fitted)
        wanted = [frozenset({p}) for p in self.candidates(conversation, estimate)]
        pending = unanswered(wanted, answers, len(wanted))
        # Once one memory has been left out alone, the fit is final. Masks are sent as one
        # run from the first, so an answered single outside that run is a refinement (a
        # mask may leave out one memory too when N is small).
        sent_masks = set(fitted)
        refining = any(len(a) == 1 and a not in sent_masks for a in answers)
        more = masks[len(fitted) :]
        if more and not refining and budget > len(pending):
            # Spare requests over what the candidates need: more masks, a better fit.
            return unanswered(more, answers, budget - len(pending))
        return pending[:budget]

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        kinds: list[RowKind] = conversation.initial_kinds()
        masks = self.fitted_masks(conversation, answers)
        estimate = self.surrogate.estimate(conversation, answers, masks)
        matrix = conversation.zero_matrix() if estimate is None else estimate.copy()
        for position in conversation.scorable:
            single = frozenset({position})
            if single in answers:
                matrix[position] = conversation.row(single, answers)
                kinds[position] = "exact"
            elif estimate is not None:
                kinds[position] = "estimated"
        capped = len(masks) < self.surrogate.ablations or any(
            frozenset({p}) not in answers for p in self.candidates(conversation, estimate)
        )
        return conversation.memory_score(answers, matrix, kinds, strategy="hybrid", capped=capped)


def _answered_run(masks: list[Ablation], answers: Answers) -> list[Ablation]:
    """The longest run of ``masks`` from the first that is answered."""
    for count, mask in enumerate(masks):
        if not all_answered([mask], answers):
            return masks[:count]
    return masks
