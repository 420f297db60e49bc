"""In-memory stand-ins for the consumer's narrow protocols: broker, scorer, store, producer.

Each fails on a schedule (FaultPlan) read off the virtual clock, and records what
happened so a simulation can check the worker's promises afterwards. They are fakes
of memscore's own seams (Scorer, ScoreWriter, Producer, the loop's Consumer), never
of aiokafka, httpx or SQLAlchemy themselves; the errors they raise are the ones those
seams really raise (aiokafka's KafkaConnectionError, memscore's error tree).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaConnectionError

from worker.errors import (
    ContextLengthError,
    InferenceResponseError,
    InferenceUnavailable,
    StoreUnavailable,
)
from worker.events import ConversationEvent
from worker.scoring import ConversationScore, MemoryScore
from worker.store import EventSource, SaveOutcome, StoredRun

TOPIC = "conversation-closed"
OUTPUT = "memory-scored"
DLQ = "conversation-closed.dlq"


def now() -> float:
    return asyncio.get_running_loop().time()


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass
class FaultPlan:
    """When each dependency is down for everyone (outages), in virtual seconds."""

    vllm: list[Window] = field(default_factory=list)
    postgres: list[Window] = field(default_factory=list)
    #: PostgreSQL answering reads but refusing writes (a failover's read-only primary).
    postgres_writes: list[Window] = field(default_factory=list)
    kafka_produce: list[Window] = field(default_factory=list)
    kafka_commit: list[Window] = field(default_factory=list)

    def down(self, which: str) -> bool:
        t = now()
        return any(t in w for w in getattr(self, which))

    @property
    def clears_at(self) -> float:
        ends = [w.end for ws in vars(self).values() for w in ws]
        return max(ends, default=0.0)


@dataclass(frozen=True)
class EventScript:
    """How one event's own requests behave, whatever the outages do.

    ``kind``: good; context_length / bad_response (poison after ``transient`` 503s);
    data_error (the store refuses its row after ``transient`` PostgreSQL failures: a
    bug, parked as internal); cursed (503 on its first ``transient`` attempts —
    possibly for longer than the retry budget — then fine).
    """

    kind: str = "good"
    transient: int = 0
    seconds: float = 1.0


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass
class Ledger:
    """What happened, for the invariants."""

    finished: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset)
    commits: list[tuple[float, int, int]] = field(default_factory=list)
    score_calls: dict[str, int] = field(default_factory=dict)
    #: Scoring calls that returned a score (model requests spent in full).
    scored: dict[str, int] = field(default_factory=dict)


class Broker:
    """The input topic's partitions, the committed offsets, and what was produced."""

    def __init__(self, partitions: list[list[bytes | None]], faults: FaultPlan) -> None:
        self.logs = [
            [Record(TOPIC, p, o, f"k{p}".encode(), value) for o, value in enumerate(values)]
            for p, values in enumerate(partitions)
        ]
        self.committed: dict[int, int] = {}
        self.produced: dict[str, list[tuple[bytes | None, list[tuple[str, bytes]]]]] = {
            OUTPUT: [],
            DLQ: [],
        }
        self.faults = faults
        self.ledger = Ledger()


class FakeConsumer:
    """One worker incarnation's view of the group: every partition, rebalanced on cue."""

    def __init__(self, broker: Broker, rebalances: Iterable[float]) -> None:
        self.broker = broker
        self._rebalances = sorted(rebalances)
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._position: dict[TopicPartition, int] = {}
        self._listener: ConsumerRebalanceListener | None = None
        self._joined = False

    def subscribe(self, topics: list[str], *, listener: ConsumerRebalanceListener) -> None:
        self._listener = listener

    async def _assign(self) -> None:
        assert self._listener is not None
        self._assigned = {TopicPartition(TOPIC, p) for p in range(len(self.broker.logs))}
        self._paused.clear()
        for tp in self._assigned:
            self._position[tp] = self.broker.committed.get(tp.partition, 0)
        await self._listener.on_partitions_assigned(set(self._assigned))

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        assert self._listener is not None
        if not self._joined:
            self._joined = True
            await self._assign()
        if self._rebalances and now() >= self._rebalances[0]:
            self._rebalances.pop(0)
            revoked, self._assigned = set(self._assigned), set()
            await self._listener.on_partitions_revoked(revoked)
            await self._assign()
        batch: dict[TopicPartition, list[Any]] = {}
        room = max_records or 1 << 30
        for tp in sorted(self._assigned - self._paused):
            log = self.broker.logs[tp.partition]
            start = self._position[tp]
            records = log[start : start + room]
            if records:
                batch[tp] = list(records)
                self._position[tp] = start + len(records)
                room -= len(records)
            if room <= 0:
                break
        if not batch:
            await asyncio.sleep(timeout_ms / 1000)
        else:
            await asyncio.sleep(0)
        return batch

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        await asyncio.sleep(0.001)
        if self.broker.faults.down("kafka_commit"):
            raise KafkaConnectionError("simulated: commit")
        ledger = self.broker.ledger
        for tp, offset in offsets.items():
            before = self.broker.committed.get(tp.partition, 0)
            assert offset >= before, f"commit went backwards on {tp.partition}: {before}→{offset}"
            unfinished = [o for o in range(offset) if (tp.partition, o) not in ledger.finished]
            assert not unfinished, f"committed {offset} on {tp.partition} past {unfinished}"
            self.broker.committed[tp.partition] = offset
            ledger.commits.append((now(), tp.partition, offset))

    async def committed(self, partition: TopicPartition) -> int | None:
        return self.broker.committed.get(partition.partition)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.broker.logs[partition.partition])


class FakeProducer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        await asyncio.sleep(0.005)
        if self.broker.faults.down("kafka_produce"):
            raise KafkaConnectionError("simulated: produce")
        self.broker.produced[topic].append((value, list(headers or [])))


def identity(event_source: str | None, event_id: str) -> str:
    return f"{event_source or ''}|{event_id}"


class FakeStore:
    """Stored runs keyed by (source, id), as the real store's unique constraint does."""

    def __init__(self, broker: Broker, scripts: dict[str, EventScript]) -> None:
        self.broker = broker
        self.scripts = scripts
        self.runs: dict[str, StoredRun] = {}
        self.stored_at: dict[str, float] = {}
        self.sources: dict[str, list[EventSource | None]] = {}
        self._failures: dict[str, int] = {}

    async def _reach(self) -> None:
        await asyncio.sleep(0.002)
        if self.broker.faults.down("postgres"):
            raise StoreUnavailable("simulated: postgres down")

    async def save(
        self, result: ConversationScore, source: EventSource | None = None
    ) -> SaveOutcome:
        await self._reach()
        if self.broker.faults.down("postgres_writes"):
            raise StoreUnavailable("simulated: read-only")
        key = identity(result.event_source, result.event_id)
        script = self.scripts[key]
        if script.kind == "data_error":
            seen = self._failures[key] = self._failures.get(key, 0) + 1
            if seen <= script.transient:
                raise StoreUnavailable("simulated: this event's transaction failed")
            raise ValueError("simulated DataError: the row cannot be stored")
        self.sources.setdefault(key, []).append(source)
        if key in self.runs:
            return SaveOutcome.DUPLICATE
        self.stored_at[key] = now()
        self.runs[key] = StoredRun(
            id=len(self.runs) + 1,
            event_id=result.event_id,
            event_source=result.event_source,
            conversation_id=result.conversation_id,
            model=result.model,
            scorer_version=result.scorer_version,
            requests=result.requests,
            prompt_tokens=result.prompt_tokens,
            response_tokens=result.response_tokens,
            duration_seconds=result.duration_seconds,
            source=source,
            created_at=datetime(2026, 12, 2, tzinfo=UTC) + timedelta(seconds=now()),
            score=result.score,
        )
        return SaveOutcome.STORED

    async def run_by_event_id(
        self, event_id: str, event_source: str | None = None
    ) -> StoredRun | None:
        await self._reach()
        return self.runs.get(identity(event_source, event_id))

    async def ping(self) -> None:
        await self._reach()


class FakeScorer:
    """Scores on the virtual clock; fails as the outages and the event's script say."""

    def __init__(self, broker: Broker, store: FakeStore, scripts: dict[str, EventScript]) -> None:
        self.broker = broker
        self.store = store
        self.scripts = scripts
        self._attempts: dict[str, int] = {}

    async def score(self, event: ConversationEvent) -> ConversationScore:
        key = identity(event.source, event.event_id)
        ledger = self.broker.ledger
        ledger.score_calls[key] = ledger.score_calls.get(key, 0) + 1
        script = self.scripts[key]
        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
        await asyncio.sleep(0.05)
        if self.broker.faults.down("vllm"):
            raise InferenceUnavailable("simulated: vllm down", "vllm-0:8000")
        if attempt <= script.transient and script.kind != "data_error":
            raise InferenceUnavailable("simulated: 503", "vllm-0:8000")
        if script.kind == "context_length":
            raise ContextLengthError("simulated: over the context length")
        if script.kind == "bad_response":
            raise InferenceResponseError("simulated: NaN in prompt_logprobs")
        await asyncio.sleep(script.seconds)
        ledger.scored[key] = ledger.scored.get(key, 0) + 1
        # Each scoring differs, so publishing a fresh score instead of the stored one shows.
        return _result(event, ledger.scored[key])


def _result(event: ConversationEvent, attempt: int) -> ConversationScore:
    """A deterministic score from the event's identity and how often it was scored."""
    memories = tuple(event.memory_indices)
    responses = tuple(event.response_indices)
    seed = int.from_bytes(
        hashlib.sha256(f"{identity(event.source, event.event_id)}#{attempt}".encode()).digest()[:4]
    )
    matrix = np.random.default_rng(seed).random((len(memories), len(responses)))
    keys = tuple(event.entries[i].key for i in memories)  # type: ignore[union-attr]
    return ConversationScore(
        event_id=event.event_id,
        event_source=event.source,
        conversation_id=event.conversation_id,
        model="sim",
        score=MemoryScore(
            memory_keys=keys,
            memory_entry_indices=memories,
            response_entry_indices=responses,
            response_token_counts=(3,) * len(responses),
            matrix=matrix,
        ),
        requests=1 + len(memories),
        prompt_tokens=100 * (1 + len(memories)),
        response_tokens=3 * len(responses),
        duration_seconds=1.0,
        scorer_version="sim",
    )
