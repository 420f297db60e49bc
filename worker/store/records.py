"""Plain values going into and coming out of the store."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from worker.scoring.memory_score import ConversationScore, MemoryScore


@dataclass(frozen=True)
class EventSource:
    """Where a stored event was read from; offline runs (`memscore score`) have none."""

    topic: str
    partition: int
    offset: int


class SaveOutcome(enum.Enum):
    """What save() did with one event."""

    STORED = "stored"
    #: The event_id was stored before (a redelivery); nothing changed.
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class StoredRun:
    """One stored event, with its MemoryScore rebuilt from the rows."""

    id: int
    event_id: str
    #: CloudEvents source of the event; None for a bare v1 event.
    event_source: str | None
    conversation_id: str
    model: str
    scorer_version: str
    requests: int
    prompt_tokens: int
    response_tokens: int
    duration_seconds: float
    source: EventSource | None
    created_at: datetime
    score: MemoryScore

    def as_result(self) -> ConversationScore:
        """The stored run as the scorer's result, to publish again what the store holds."""
        return ConversationScore(
            event_id=self.event_id,
            conversation_id=self.conversation_id,
            model=self.model,
            score=self.score,
            requests=self.requests,
            prompt_tokens=self.prompt_tokens,
            response_tokens=self.response_tokens,
            duration_seconds=self.duration_seconds,
            scorer_version=self.scorer_version,
            event_source=self.event_source,
        )


@dataclass(frozen=True)
class MemoryHistoryEntry:
    """One run that scored a memory."""

    event_id: str
    conversation_id: str
    scored_at: datetime
    memory_index: int
    entry_index: int
    importance: float
    #: What each response of that run lost without the memory, in response order.
    divergences: tuple[float, ...]


@dataclass(frozen=True)
class MemoryImportance:
    """The running total of one memory across every stored run."""

    memory_key: str
    cumulative_importance: float
    runs: int
    last_importance: float
    last_scored_at: datetime
    #: The totals over the runs that measured this memory alone (row kind exact/skipped).
    exact_importance: float = 0.0
    exact_runs: int = 0


@dataclass(frozen=True)
class TrainingCandidate:
    """An assistant response that depended strongly on memory."""

    event_id: str
    conversation_id: str
    scored_at: datetime
    response_index: int
    entry_index: int
    dependence: float
    token_count: int
