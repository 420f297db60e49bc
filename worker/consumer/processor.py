"""One record, end to end: decode → look up → score → save → publish, or park it.

Dependency failures (model servers, PostgreSQL, Kafka) are retried by
DependencyRetry for as long as an outage lasts and never park an event, except one
that keeps failing while the dependency serves other events (its retry budget).
Poison input is parked on the DLQ with a reason. An event that is already stored (a
redelivery) costs no model request: what the store holds is published again.
Cancellation (revoke, shutdown) leaves the offset unfinished, so the event is redone
by whoever owns the partition next.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from typing import Protocol

from worker.consumer.dead_letters import DeadLetterQueue
from worker.consumer.producer import Record
from worker.consumer.results import ResultPublisher
from worker.consumer.retrying import DependencyRetry
from worker.errors import InferenceResponseError, MemscoreError, PoisonEventError
from worker.events import ConversationEvent, decode_event
from worker.log_context import bind
from worker.observability import metrics
from worker.scoring import ConversationScore
from worker.store import EventSource, SaveOutcome, ScoreWriter

log = logging.getLogger(__name__)


class Scorer(Protocol):
    async def score(self, event: ConversationEvent) -> ConversationScore: ...


class InternalError(MemscoreError):
    """A bug met on one event. Parked on the DLQ; the DLQ guard stops a flood of them."""

    error_class = "internal"


@dataclass
class RecordProcessor:
    scorer: Scorer
    store: ScoreWriter
    results: ResultPublisher
    dead_letters: DeadLetterQueue
    retry: DependencyRetry
    max_event_bytes: int

    async def process(self, record: Record) -> str:
        """Returns the outcome: scored, empty, duplicate or dlq."""
        with bind(partition=record.partition, offset=record.offset):
            try:
                event = decode_event(record.value or b"", max_bytes=self.max_event_bytes)
            except PoisonEventError as error:
                await self._park(record, error)
                return "dlq"
            except Exception as exc:  # a bug in the decoder
                return await self._internal(record, exc)
            with bind(event_id=event.event_id):
                try:
                    return await self._score_and_store(record, event)
                except (PoisonEventError, InferenceResponseError) as error:
                    # Poison answers, a spent retry budget, or (after the client's own
                    # retries) a server that keeps answering garbage for this event.
                    await self._park(record, error)
                    return "dlq"
                except Exception as exc:
                    return await self._internal(record, exc)

    async def _internal(self, record: Record, exc: Exception) -> str:
        """A bug met on one event: park it, keep the worker alive."""
        where = traceback.extract_tb(exc.__traceback__)[-1]
        # Only the type and place: a bug's message may quote user text.
        log.error(
            "unexpected error processing an event",
            extra={"exc_type": type(exc).__name__, "at": f"{where.filename}:{where.lineno}"},
        )
        error = InternalError(f"{type(exc).__name__} at {where.name}:{where.lineno}")
        await self._park(record, error)
        return "dlq"

    async def _score_and_store(self, record: Record, event: ConversationEvent) -> str:
        if await self._republish_stored(event):
            return "duplicate"
        result = await self.retry.call("vllm", lambda: self.scorer.score(event), name="score")
        source = EventSource(record.topic, record.partition, record.offset)
        saved = await self.retry.call(
            "postgres", lambda: self.store.save(result, source), name="save"
        )
        # Stored by someone else since the look-up (a rebalance race): publish theirs.
        if saved is SaveOutcome.DUPLICATE and await self._republish_stored(event):
            return "duplicate"
        # Stored: from here on it can only be published, never parked.
        await self.retry.call("kafka", lambda: self.results.publish(result), budgeted=False)
        outcome = "empty" if result.score.is_empty else "scored"
        _observe(result)
        log.info(
            "event scored",
            extra={
                "conversation_id": event.conversation_id,
                "outcome": outcome,
                "memories": len(result.score.memory_keys),
                "responses": len(result.score.response_entry_indices),
                "requests": result.requests,
                "prompt_tokens": result.prompt_tokens,
                "duration_s": round(result.duration_seconds, 3),
            },
        )
        return outcome

    async def _republish_stored(self, event: ConversationEvent) -> bool:
        """Publish what the store holds for ``event``; False when it is not stored."""
        stored = await self.retry.call(
            "postgres",
            lambda: self.store.run_by_event_id(event.event_id, event.source),
            name="lookup",
        )
        if stored is None:
            return False
        await self.retry.call(
            "kafka",
            lambda: self.results.publish(stored.as_result(), scored_at=stored.created_at),
            budgeted=False,
        )
        # The same line as a scored event's, so one query counts every outcome.
        log.info(
            "event scored",
            extra={"conversation_id": event.conversation_id, "outcome": "duplicate", "requests": 0},
        )
        return True

    async def _park(self, record: Record, error: MemscoreError) -> None:
        # Never budgeted: parking is the last resort and must outlast a broker outage.
        await self.retry.call(
            "kafka", lambda: self.dead_letters.park(record, error), budgeted=False
        )
        metrics.DLQ_EVENTS.labels(error.error_class).inc()
        log.warning("event sent to the DLQ", extra={"error_class": error.error_class})


def _observe(result: ConversationScore) -> None:
    metrics.CONVERSATION_DURATION.observe(result.duration_seconds)
    metrics.REQUESTS_PER_CONVERSATION.observe(result.requests)
    metrics.MEMORIES_PER_CONVERSATION.observe(len(result.score.memory_keys))
    metrics.PROMPT_TOKENS_SENT.inc(result.prompt_tokens)
    metrics.RESPONSE_TOKENS_SCORED.inc(result.response_tokens)
    if result.baseline_prompt_tokens:
        metrics.PROMPT_TOKENS_PER_CONVERSATION.observe(result.baseline_prompt_tokens)
    metrics.LAST_SCORED_TIMESTAMP.set(time.time())
