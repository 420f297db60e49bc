"""What every scoring strategy shares: the conversation it plans for, ablations, answers.

A strategy is pure: it is asked for the next round of ablations given every answer so
far (an empty round means it is done), then for the MemoryScore those answers make.
It keeps no state between calls, so a round can be planned again from the same answers
and the executor (worker/inference/scorer.py) only sends what it is told to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from worker.scoring.divergence import ResponseTokens, divergence_row
from worker.scoring.memory_score import MemoryScore, Metric, RowKind, StrategyName

#: The memories one request leaves out, by position in the conversation's memory order
#: (0 .. N-1). The empty set is the baseline.
Ablation = frozenset[int]
#: What each sent ablation answered: its view of every response's tokens.
Answers = Mapping[Ablation, ResponseTokens]
BASELINE: Ablation = frozenset()


@dataclass(frozen=True)
class Conversation:
    """What a strategy may know about the conversation it scores: positions, no text."""

    memory_keys: tuple[str, ...]
    memory_entry_indices: tuple[int, ...]
    response_entry_indices: tuple[int, ...]
    metric: Metric = "drop"
    noise_floor: float = 0.0
    #: Seeds anything random (the surrogate's masks): from the event's identity, so a
    #: redelivered event is scored with the same ablations.
    seed: int = 0
    #: Ablation requests the prompt-token cap allows in all (None: no cap). Fixed once
    #: the baseline is known, so every round decides alike.
    request_budget: int | None = None

    @property
    def scorable(self) -> tuple[int, ...]:
        """Positions of the memories some response comes after: the only ones worth a request.

        A memory after the last response cannot change any response (its row is exactly 0),
        so no strategy spends a request on it.
        """
        if not self.response_entry_indices:
            return ()
        last = self.response_entry_indices[-1]
        return tuple(p for p, entry in enumerate(self.memory_entry_indices) if entry < last)

    def row(self, ablation: Ablation, answers: Answers) -> npt.NDArray[np.float64]:
        """What leaving out ``ablation`` did to every response (the divergence row).

        A response before the first memory left out cannot depend on any of them: its
        entry is exactly 0, as for one memory.
        """
        first = min(ablation)
        return divergence_row(
            answers[BASELINE],
            answers[ablation],
            memory_entry_index=self.memory_entry_indices[first],
            response_entry_indices=self.response_entry_indices,
            memory_number=first,
            metric=self.metric,
            noise_floor=self.noise_floor,
        )

    def memory_score(
        self,
        answers: Answers,
        matrix: npt.NDArray[np.float64],
        row_kinds: Sequence[RowKind],
        *,
        strategy: StrategyName,
        capped: bool,
    ) -> MemoryScore:
        return MemoryScore(
            memory_keys=self.memory_keys,
            memory_entry_indices=self.memory_entry_indices,
            response_entry_indices=self.response_entry_indices,
            response_token_counts=answers[BASELINE].token_counts,
            matrix=matrix,
            metric=self.metric,
            noise_floor=self.noise_floor,
            strategy=strategy,
            row_kinds=tuple(row_kinds),
            capped=capped,
        )

    def zero_matrix(self) -> npt.NDArray[np.float64]:
        return np.zeros((len(self.memory_keys), len(self.response_entry_indices)), np.float64)

    def initial_kinds(self) -> list[RowKind]:
        """Every scorable memory unscored until a strategy says otherwise; the rest skipped."""
        scorable = set(self.scorable)
        return ["unscored" if p in scorable else "skipped" for p in range(len(self.memory_keys))]


class Strategy(Protocol):
    """Plans ablations in rounds and turns their answers into a MemoryScore."""

    @property
    def name(self) -> str: ...

    def plan(self, conversation: Conversation, answers: Answers, budget: int) -> list[Ablation]:
        """The next round: at most ``budget`` ablations not yet answered; [] when done."""
        ...

    def score(self, conversation: Conversation, answers: Answers) -> MemoryScore:
        """The MemoryScore of the answers (the baseline's included)."""
        ...


def unanswered(wanted: Iterable[Ablation], answers: Answers, budget: int) -> list[Ablation]:
    """The first ``budget`` of ``wanted`` that are not answered yet, each once, in order."""
    chosen: list[Ablation] = []
    seen: set[Ablation] = set()
    for ablation in wanted:
        if len(chosen) >= budget:
            break
        if ablation and ablation not in answers and ablation not in seen:
            seen.add(ablation)
            chosen.append(ablation)
    return chosen


def all_answered(ablations: Iterable[Ablation], answers: Answers) -> bool:
    """Is every ablation answered? (The empty one needs no request: the baseline's.)"""
    return all(not ablation or ablation in answers for ablation in ablations)


def event_seed(event_id: str, event_source: str | None) -> int:
    """A 64-bit seed from an event's identity: the same on every redelivery, every process."""
    digest = hashlib.sha256(f"{event_source or ''}\x00{event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")
