"""One record, end to end: decode, score, store, publish — or park it on the DLQ.

Transient failures (model servers, PostgreSQL, Kafka down) are retried here with
backoff for as long as it takes, and reported to the DependencyGate so the loop
stops taking new work meanwhile; they never send an event to the DLQ. Poison
input goes to the DLQ with a reason. Cancellation (revoke, shutdown) leaves the
offset unfinished, so the event is redone by whoever owns the partition next.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from worker.consumer.messages import dlq_headers, result_event
from worker.errors import (
    DependencyUnavailable,
    InferenceResponseError,
    MemscoreError,
    PoisonEventError,
)
from worker.events import ConversationEvent, decode_event
from worker.observability import metrics
from worker.scoring import ConversationScore
from worker.store import EventSource, SaveOutcome, ScoreWriter

log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: On a DLQ record parked without its value (too large to send): the value's size in bytes.
VALUE_DROPPED_HEADER = "memscore.value_dropped_bytes"


class Record(Protocol):
    """The parts of aiokafka's ConsumerRecord that are used."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Producer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...


class Scorer(Protocol):
    async def score(self, event: ConversationEvent) -> ConversationScore: ...


@dataclass
class DependencyGate:
    """Which dependencies are failing right now; the loop pauses intake while any is."""

    down: set[str] = field(default_factory=set)

    def mark_down(self, dependency: str) -> None:
        if dependency not in self.down:
            log.warning("dependency unavailable, pausing intake", extra={"dependency": dependency})
        self.down.add(dependency)
        metrics.DEPENDENCY_UP.labels(dependency).set(0)

    def mark_up(self, dependency: str) -> None:
        if dependency in self.down:
            log.info("dependency back", extra={"dependency": dependency})
        self.down.discard(dependency)
        metrics.DEPENDENCY_UP.labels(dependency).set(1)

    def forget(self, dependency: str) -> None:
        """No task is left retrying ``dependency``: let new work find out whether it is back."""
        if dependency in self.down:
            log.info("dependency state unknown, resuming intake", extra={"dependency": dependency})
        self.down.discard(dependency)

    @property
    def healthy(self) -> bool:
        return not self.down


class InternalError(MemscoreError):
    """A bug met on one event. Parked on the DLQ; the DLQ guard stops a flood of them."""

    error_class = "internal"


@dataclass
class RecordProcessor:
    scorer: Scorer
    store: ScoreWriter
    producer: Producer
    gate: DependencyGate
    output_topic: str
    dlq_topic: str
    max_event_bytes: int
    retry_base_seconds: float = 0.5
    retry_max_seconds: float = 30.0

    async def process(self, record: Record) -> str:
        """Returns the outcome: scored, empty, duplicate or dlq."""
        try:
            return await self._process(record)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a bug: park the event, keep the worker alive
            where = traceback.extract_tb(exc.__traceback__)[-1]
            # Only the type and place: a bug's message may quote user text.
            log.error(
                "unexpected error processing an event",
                extra={
                    "exc_type": type(exc).__name__,
                    "at": f"{where.filename}:{where.lineno}",
                    "offset": record.offset,
                    "partition": record.partition,
                },
            )
            error = InternalError(f"{type(exc).__name__} at {where.name}:{where.lineno}")
            await self._dead_letter(record, error)
            return "dlq"

    async def _process(self, record: Record) -> str:
        try:
            event = decode_event(record.value or b"", max_bytes=self.max_event_bytes)
            result = await self._retrying("vllm", lambda: self.scorer.score(event))
        except (PoisonEventError, InferenceResponseError) as error:
            # InferenceResponseError arrives here only after the client's own retries:
            # a server that keeps answering garbage for this event. Never store it.
            await self._dead_letter(record, error)
            return "dlq"
        source = EventSource(record.topic, record.partition, record.offset)
        saved = await self._retrying("postgres", lambda: self.store.save(result, source))
        await self._retrying("kafka", lambda: self._publish(result))
        if saved is SaveOutcome.DUPLICATE:
            outcome = "duplicate"
        else:
            outcome = "empty" if result.score.is_empty else "scored"
            self._observe(result)
        log.info(
            "event scored",
            extra={
                "event_id": event.event_id,
                "conversation_id": event.conversation_id,
                "outcome": outcome,
                "memories": len(result.score.memory_keys),
                "responses": len(result.score.response_entry_indices),
                "requests": result.requests,
                "prompt_tokens": result.prompt_tokens,
                "duration_s": round(result.duration_seconds, 3),
                "partition": record.partition,
                "offset": record.offset,
            },
        )
        return outcome

    @staticmethod
    def _observe(result: ConversationScore) -> None:
        metrics.CONVERSATION_DURATION.observe(result.duration_seconds)
        metrics.REQUESTS_PER_CONVERSATION.observe(result.requests)
        metrics.MEMORIES_PER_CONVERSATION.observe(len(result.score.memory_keys))
        metrics.PROMPT_TOKENS_SENT.inc(result.prompt_tokens)
        metrics.RESPONSE_TOKENS_SCORED.inc(result.response_tokens)
        if result.requests:
            metrics.PROMPT_TOKENS_PER_CONVERSATION.observe(result.prompt_tokens / result.requests)
        metrics.LAST_SCORED_TIMESTAMP.set(time.time())

    async def _publish(self, result: ConversationScore) -> None:
        try:
            await self.producer.send_and_wait(
                self.output_topic,
                value=result_event(result),
                key=result.conversation_id.encode(),
            )
        except KafkaError as exc:
            metrics.PUBLISH_FAILURES.inc()
            raise DependencyUnavailable(
                f"publishing failed: {type(exc).__name__}", "kafka"
            ) from None

    async def _dead_letter(self, record: Record, error: MemscoreError) -> None:
        headers = dlq_headers(
            record.headers,
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )

        async def send() -> None:
            try:
                try:
                    await self.producer.send_and_wait(
                        self.dlq_topic,
                        # aiokafka refuses a record with neither key nor value (other clients
                        # produce such tombstones): park that one with an empty value.
                        value=b"" if record.value is None and record.key is None else record.value,
                        key=record.key,
                        headers=headers,
                    )
                except MessageSizeTooLargeError:
                    # Too big for any request to the DLQ: retrying cannot help, and retrying
                    # forever would stall the partition for good. Park it without its value.
                    dropped = (VALUE_DROPPED_HEADER, str(len(record.value or b"")).encode())
                    await self.producer.send_and_wait(
                        self.dlq_topic, value=b"", key=record.key, headers=[*headers, dropped]
                    )
            except KafkaError as exc:
                raise DependencyUnavailable(
                    f"DLQ produce failed: {type(exc).__name__}", "kafka"
                ) from None

        await self._retrying("kafka", send)
        metrics.DLQ_EVENTS.labels(error.error_class).inc()
        log.warning(
            "event sent to the DLQ",
            extra={
                "error_class": error.error_class,
                "partition": record.partition,
                "offset": record.offset,
            },
        )

    async def _retrying(self, dependency: str, operation: Callable[[], Awaitable[_T]]) -> _T:
        """Call ``operation`` until it succeeds; a success marks ``dependency`` up."""
        attempt = 0
        try:
            while True:
                try:
                    result = await operation()
                except DependencyUnavailable as exc:
                    self.gate.mark_down(exc.dependency)
                    metrics.RETRIES.labels(exc.dependency).inc()
                    ceiling = min(self.retry_max_seconds, self.retry_base_seconds * 2**attempt)
                    attempt += 1
                    log.info(
                        "dependency call failed, retrying",
                        extra={"dependency": exc.dependency, "attempt": attempt},
                    )
                    await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
                    continue
                self.gate.mark_up(dependency)
                return result
        except asyncio.CancelledError:
            if attempt:
                # Cancelled mid-retry (its partition was revoked). Only a success marks a
                # dependency up and the loop takes no new work while one is down: left
                # marked, intake would stay paused for good once no task is left to retry.
                self.gate.forget(dependency)
            raise
