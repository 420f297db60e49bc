"""Hierarchical leave-one-out (after AttriBoT): leave out groups of adjacent memories, and
split only the groups whose removal moves some response by more than a threshold.

The memories some response comes after form the root; each group splits into
``branching`` contiguous parts of near-equal size, down to single memories. The root is
never sent (leaving out every memory moves nearly any answer); its parts are the first
round. A group is refined when leaving it out moves some response by more than
``threshold`` nats (the largest entry of its divergence row, in absolute value): then its
parts are the next round. A single memory reached this way gets its exact LOO row; the
members of a group that moved nothing by more than the threshold are ``pruned`` (row 0).

The threshold is in the matrix's own unit, nats per response: a memory whose removal
costs no response more than ``threshold`` nats is treated as unused (unless a finer
group holding it was measured anyway). At 0 the hierarchy prunes only groups that
moved nothing at all, which equals LOO whenever a group's effect is at least each of
its members' (drop is monotone in what is left out). Under a cap, a group that could
not be refined gives each member an equal share of its row (``estimated``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.scoring.memory_score import MemoryScore, RowKind
from worker.scoring.strategies.base import Ablation, Answers, Conversation, unanswered


def _parts(group: tuple[int, ...], branching: int) -> list[tuple[int, ...]]:
    """``group`` split into ``branching`` contiguous parts of near-equal size."""
    count = min(branching, len(group))
    bounds = [round(k * len(group) / count) for k in range(count + 1)]
    return [group[bounds[k] : bounds[k + 1]] for k in range(count)]


@dataclass(frozen=True)
class Hierarchical:
    #: Nats a group's removal must move some response by for the group to be split.
    threshold: float = 1.0
    branching: int = 2
    name = "hierarchical"

    def __post_init__(self) -> None:
        if self.branching < 2 or self.threshold < 0:
            raise ValueError("branching must be >= 2 and threshold >= 0")

    def _moves(self, conversation: Conversation, group: tuple[int, ...], answers: Answers) -> bool:
        row = conversation.row(frozenset(group), answers)
        return bool(row.size) and float(np.max(np.abs(row))) > self.threshold

    def _wanted(self, conversation: Conversation, answers: Answers) -> Iterator[Ablation]:
        """Every group the recursion needs given the answers, breadth first."""
        root = conversation.scorable
        level = _parts(root, self.branching) if root else []
        while level:
            deeper: list[tuple[int, ...]] = []
            for group in level:
                ablation = frozenset(group)
                if ablation not in answers:
                    yield ablation
                elif len(group) > 1 and self._moves(conversation, group, answers):
                    deeper += _parts(group, self.branching)
            level = deeper

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        return unanswered(self._wanted(conversation, answers), answers, budget)

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        matrix = conversation.zero_matrix()
        kinds: list[RowKind] = conversation.initial_kinds()
        root = conversation.scorable
        # (group, per-member share of the measured parent's row; None at the top level)
        stack: list[tuple[tuple[int, ...], npt.NDArray[np.float64] | None]] = [
            (part, None) for part in (_parts(root, self.branching) if root else [])
        ]
        while stack:
            group, share = stack.pop()
            ablation = frozenset(group)
            if ablation not in answers:
                # The cap stopped the recursion here: the parent's effect, shared equally.
                if share is not None:
                    for position in group:
                        matrix[position] = share
                        kinds[position] = "estimated"
                continue
            if len(group) == 1:
                matrix[group[0]] = conversation.row(ablation, answers)
                kinds[group[0]] = "exact"
            elif self._moves(conversation, group, answers):
                row = conversation.row(ablation, answers)
                stack += [(part, row / len(group)) for part in _parts(group, self.branching)]
            else:
                for position in group:
                    kinds[position] = "pruned"
        capped = any(kind in ("estimated", "unscored") for kind in kinds)
        return conversation.memory_score(
            answers, matrix, kinds, strategy="hierarchical", capped=capped
        )
