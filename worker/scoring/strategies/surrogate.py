"""Surrogate (after ContextCite): a fixed number of random ablations, one sparse linear model.

Each of ``ablations`` requests leaves out every memory some response comes after with
probability ``removal_probability``, drawn from a generator seeded by the event's
identity, so a redelivered event sends the same requests. For each response, its
divergence under an ablation (the matrix's own metric: with ``drop``, the nats its tokens
lost, per-token gains ignored, the noise floor applied) is fitted as a sum over the
memories left out, by Lasso (positive weights for ``drop``, signed ones for ``net``):

    divergence_j(S) ~ b_j + sum over i in S of w_ij

``w_ij`` is the estimate of ``matrix[i, j]`` (``estimated`` rows). When memories act
independently (each token of a response depends on at most one memory) the divergence
is exactly additive and the fit recovers the LOO drop (up to Lasso's shrinkage, alpha
being ``alpha_ratio`` of the alpha that zeroes every weight). When they do not, the
weights are an average effect over random contexts, not LOO's: two memories that say
the same thing score ~0 each under LOO (the other still carries the fact) but ~half of
their joint effect each here. Responses before a memory get exactly 0, as in LOO.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.scoring.memory_score import MemoryScore, RowKind
from worker.scoring.strategies.base import (
    BASELINE,
    Ablation,
    Answers,
    Conversation,
    all_answered,
    unanswered,
)
from worker.scoring.strategies.lasso import alpha_max, lasso


@dataclass(frozen=True)
class Surrogate:
    ablations: int = 32
    removal_probability: float = 0.5
    alpha_ratio: float = 0.01
    name = "surrogate"

    def __post_init__(self) -> None:
        if self.ablations < 1 or not 0 < self.removal_probability < 1 or self.alpha_ratio < 0:
            raise ValueError("ablations >= 1, 0 < removal_probability < 1, alpha_ratio >= 0")

    def masks(self, conversation: Conversation) -> list[Ablation]:
        """The ablations, in the order they are sent; the same for the same event."""
        scorable = np.array(conversation.scorable, dtype=np.int64)
        rng = np.random.default_rng(conversation.seed)
        drawn = rng.random((self.ablations, len(scorable))) < self.removal_probability
        return [frozenset(scorable[row].tolist()) for row in drawn]

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        return unanswered(self.masks(conversation), answers, budget)

    def estimate(
        self, conversation: Conversation, answers: Answers, masks: list[Ablation]
    ) -> npt.NDArray[np.float64] | None:
        """The fitted matrix from the answered ``masks``; None when none left anything out."""
        answered = [BASELINE] + [mask for mask in masks if mask in answers]
        if not any(answered[1:]):
            return None
        matrix = conversation.zero_matrix()
        scorable = conversation.scorable
        x = np.array([[p in mask for p in scorable] for mask in answered], dtype=np.float64)
        y = np.array(
            [
                conversation.row(mask, answers)
                if mask
                else np.zeros(len(conversation.response_entry_indices))
                for mask in answered
            ]
        )
        entries = np.array([conversation.memory_entry_indices[p] for p in scorable])
        for j, response in enumerate(conversation.response_entry_indices):
            features = np.flatnonzero(entries < response)  # causal zeros stay exact
            if not features.size:
                continue
            xs = x[:, features]
            alpha = self.alpha_ratio * alpha_max(xs, y[:, j])
            weights, _ = lasso(xs, y[:, j], alpha, positive=conversation.metric == "drop")
            matrix[np.array(scorable)[features], j] = weights
        return matrix

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        kinds: list[RowKind] = conversation.initial_kinds()
        masks = self.masks(conversation)
        matrix = self.estimate(conversation, answers, masks)
        if matrix is None:
            matrix = conversation.zero_matrix()
        else:
            for position in conversation.scorable:
                kinds[position] = "estimated"
        capped = not all_answered(masks, answers)
        return conversation.memory_score(
            answers, matrix, kinds, strategy="surrogate", capped=capped
        )
