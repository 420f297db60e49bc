"""MemoryScore: the memories x responses divergence matrix and what is read off it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

Metric = Literal["drop", "net"]
#: Which strategy chose the ablations and turned their answers into the matrix.
StrategyName = Literal["loo", "hierarchical", "surrogate", "hybrid"]
#: How a memory's row was obtained. ``exact``: its own leave-one-out ablation was
#: measured. ``estimated``: inferred from ablations that left out several memories at
#: once (the surrogate's fit, the hybrid's memories it did not refine, or a group the
#: hierarchy could not refine within the cap).
#: ``pruned``: the hierarchy left out a group holding it and no response moved by more
#: than the threshold, so the row is 0 without a request of its own. ``skipped``: the
#: memory comes after the last response, so no response can depend on it: exactly 0,
#: no request. ``unscored``: the token cap left no request for it; 0 is not a measurement.
RowKind = Literal["exact", "estimated", "pruned", "skipped", "unscored"]
ROW_KINDS: tuple[RowKind, ...] = ("exact", "estimated", "pruned", "skipped", "unscored")
#: The kinds that measure their memory alone.
MEASURED_ALONE: frozenset[RowKind] = frozenset({"exact", "skipped"})

#: important_memories_for_entry() lists memories scoring above this.
IMPORTANCE_THRESHOLD = 0.01


@dataclass(frozen=True, eq=False)
class MemoryScore:
    """Leave-one-out divergences of one conversation.

    ``matrix[i, j]`` is how much response ``j`` lost (in nats, summed over its
    tokens) when memory ``i`` was left out. Row sums are memory importance, column
    sums are each response's dependence on memory.
    """

    memory_keys: tuple[str, ...]
    memory_entry_indices: tuple[int, ...]
    response_entry_indices: tuple[int, ...]
    response_token_counts: tuple[int, ...]
    matrix: npt.NDArray[np.float64]
    metric: Metric = "drop"
    noise_floor: float = 0.0
    strategy: StrategyName = "loo"
    #: One RowKind per memory; empty means every row is exact (what LOO always gave).
    row_kinds: tuple[RowKind, ...] = ()
    #: True when the prompt-token cap stopped the strategy short of its own plan.
    capped: bool = False
    _memory_weights: npt.NDArray[np.float64] = field(init=False, repr=False)
    _response_scores: npt.NDArray[np.float64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n, r = len(self.memory_keys), len(self.response_entry_indices)
        if self.matrix.shape != (n, r):
            raise ValueError(f"matrix shape {self.matrix.shape} does not match {n} x {r}")
        if len(self.memory_entry_indices) != n or len(self.response_token_counts) != r:
            raise ValueError("index tuples do not match the matrix")
        if not self.row_kinds:
            object.__setattr__(self, "row_kinds", ("exact",) * n)
        if len(self.row_kinds) != n:
            raise ValueError(f"{len(self.row_kinds)} row kinds for {n} memories")
        self.matrix.setflags(write=False)
        object.__setattr__(self, "_memory_weights", self.matrix.sum(axis=1))
        object.__setattr__(self, "_response_scores", self.matrix.sum(axis=0))

    @classmethod
    def empty(
        cls,
        memory_keys: tuple[str, ...] = (),
        memory_entry_indices: tuple[int, ...] = (),
        response_entry_indices: tuple[int, ...] = (),
        response_token_counts: tuple[int, ...] = (),
        metric: Metric = "drop",
        strategy: StrategyName = "loo",
    ) -> MemoryScore:
        """A conversation with no memories or no responses: nothing to attribute."""
        shape = (len(memory_keys), len(response_entry_indices))
        skip: RowKind = "skipped"
        skipped = (skip,) * shape[0]
        return cls(
            memory_keys=memory_keys,
            memory_entry_indices=memory_entry_indices,
            response_entry_indices=response_entry_indices,
            response_token_counts=response_token_counts or (0,) * shape[1],
            matrix=np.zeros(shape, dtype=np.float64),
            metric=metric,
            strategy=strategy,
            # Nothing to depend on them: the same free zero as a memory after the last response.
            row_kinds=skipped,
        )

    @property
    def is_empty(self) -> bool:
        return self.matrix.size == 0

    @property
    def exact(self) -> bool:
        """Is every row a measurement of its own (exact, or a free zero)?"""
        return all(kind in MEASURED_ALONE for kind in self.row_kinds)

    @property
    def memory_weights(self) -> list[tuple[str, float]]:
        """(memory key, importance = row sum), in conversation order."""
        return [(k, float(w)) for k, w in zip(self.memory_keys, self._memory_weights, strict=True)]

    @property
    def response_scores(self) -> list[float]:
        """Each response's dependence on memory (column sum), in conversation order."""
        return [float(s) for s in self._response_scores]

    def important_memories_for_entry(self, entry_index: int) -> list[tuple[str, float]]:
        """(key, score) of the memories response ``entry_index`` used, highest first."""
        try:
            column = self.response_entry_indices.index(entry_index)
        except ValueError:
            raise KeyError(f"entry {entry_index} is not a scored assistant response") from None
        pairs = [
            (key, float(self.matrix[row, column]))
            for row, key in enumerate(self.memory_keys)
            if self.matrix[row, column] > IMPORTANCE_THRESHOLD
        ]
        return sorted(pairs, key=lambda pair: pair[1], reverse=True)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready form (the `memscore score --format json` shape)."""
        return {
            "memory_keys": list(self.memory_keys),
            "memory_entry_indices": list(self.memory_entry_indices),
            "memory_weights": [[k, w] for k, w in self.memory_weights],
            "response_entry_indices": list(self.response_entry_indices),
            "response_token_counts": list(self.response_token_counts),
            "response_scores": self.response_scores,
            "matrix": self.matrix.tolist(),
            "metric": self.metric,
            "noise_floor": self.noise_floor,
            "strategy": self.strategy,
            "row_kinds": list(self.row_kinds),
            "capped": self.capped,
        }


@dataclass(frozen=True)
class ConversationScore:
    """One scored event: the MemoryScore plus what it cost. What the store persists."""

    event_id: str
    conversation_id: str
    model: str
    score: MemoryScore
    requests: int
    prompt_tokens: int
    response_tokens: int
    duration_seconds: float
    scorer_version: str
    #: CloudEvents source of the event (its id is unique only within it); None if bare.
    event_source: str | None = None
    #: Prompt tokens of the baseline request (the whole conversation); 0 if none was sent.
    #: Not prompt_tokens / requests: an ablation is shorter, a random mask much shorter.
    baseline_prompt_tokens: int = 0
