"""What memscore writes to Kafka: DLQ records' headers and memory-scored result events.

Pure functions. DLQ headers never echo raw content beyond a bounded reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from worker import SCORER_VERSION
from worker.errors import MemscoreError
from worker.scoring import ConversationScore

#: Namespace for result event ids: uuid5(namespace, source event id) is stable. An event
#: with a CloudEvents source gets uuid5(uuid5(namespace, source), id): ids are unique
#: only within their source, and a bare event's id stays what it always was.
RESULT_NAMESPACE = uuid.UUID("6f1c3a52-6d1f-4b7e-9a55-1f0c8d3b7e21")
MAX_REASON_CHARS = 512
Headers = Sequence[tuple[str, bytes]]


def dlq_headers(
    original: Headers | None,
    error: MemscoreError,
    *,
    topic: str,
    partition: int,
    offset: int,
    now: datetime | None = None,
) -> list[tuple[str, bytes]]:
    """The original headers plus why and where the record failed."""
    reason = error.message[:MAX_REASON_CHARS]
    failed_at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    ours = [
        ("memscore.error.class", error.error_class.encode()),
        ("memscore.error.type", type(error).__name__.encode()),
        ("memscore.error.reason", reason.encode("utf-8", errors="replace")),
        ("memscore.source.topic", topic.encode()),
        ("memscore.source.partition", str(partition).encode()),
        ("memscore.source.offset", str(offset).encode()),
        ("memscore.failed_at", failed_at.encode()),
    ]
    kept = [(k, v) for k, v in (original or ()) if not k.startswith("memscore.")]
    return kept + ours


def result_event_id(source_event_id: str, event_source: str | None = None) -> str:
    namespace = RESULT_NAMESPACE if not event_source else uuid.uuid5(RESULT_NAMESPACE, event_source)
    return str(uuid.uuid5(namespace, source_event_id))


def result_event(result: ConversationScore, *, now: datetime | None = None) -> bytes:
    """The memory-scored event (JSON). Consumers dedupe on event_id.

    ``now`` is its scored_at: the stored run's time when an already stored event is
    published again, so a republication repeats the first one.
    """
    score = result.score
    return msgspec.json.encode(
        {
            "schema_version": 1,
            "event_id": result_event_id(result.event_id, result.event_source),
            "source_event_id": result.event_id,
            "source_event_source": result.event_source,
            "conversation_id": result.conversation_id,
            "model": result.model,
            "metric": score.metric,
            # Which strategy scored it; exact is false when any importance is an estimate
            # (see each memory's kind), capped when the prompt-token cap cut it short.
            "strategy": score.strategy,
            "exact": score.exact,
            "capped": score.capped,
            "scorer_version": SCORER_VERSION,
            "scored_at": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
            "memories": [
                {
                    "key": key,
                    "entry_index": entry,
                    "importance": weight,
                    "kind": kind,
                    "exact": kind in ("exact", "skipped"),
                }
                for (key, weight), entry, kind in zip(
                    score.memory_weights, score.memory_entry_indices, score.row_kinds, strict=True
                )
            ],
            "responses": [
                {"entry_index": entry, "dependence": dependence, "tokens": tokens}
                for entry, dependence, tokens in zip(
                    score.response_entry_indices,
                    score.response_scores,
                    score.response_token_counts,
                    strict=True,
                )
            ],
        }
    )
