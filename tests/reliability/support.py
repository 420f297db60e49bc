"""What the reliability tests measure: the ledger of one run, read from the real parts.

The promise under test: every conversation-closed event is either scored and stored
exactly once (in effect) or parked on the DLQ with a reason. `Ledger` reads back what
PostgreSQL, the output topic, the DLQ and the committed offsets say about a run, so a
test compares one expected picture with one actual picture.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.integration.harness import WorkerProcess, committed_offsets, eventually, scalar
from worker.consumer.messages import result_event_id

#: Memory keys shared across events, so the running totals add up many runs per key
#: and a double-counted event would show as a total that disagrees with its rows.
SHARED_KEYS = 12
Matrices = dict[str, list[list[float]]]


def shared_key_event(seed: int, *, memories: int, **options: Any) -> dict[str, Any]:
    """A generated event whose memory keys come from a small pool shared by all events."""
    event = generated_event(seed, memories=memories, **options)
    slot = 0
    for entry in event["entries"]:
        if entry["type"] == "memory":
            entry["key"] = f"shared-{(seed + slot) % SHARED_KEYS}"
            slot += 1
    return event


async def rows(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.execute(sa.text(sql))).all()]
    finally:
        await engine.dispose()


async def stored_runs(database_url: str) -> int:
    return int(await scalar(database_url, "SELECT count(*) FROM scoring_runs"))


async def read_all(bootstrap: str, topic: str, *, wait_seconds: float = 20) -> list[Any]:
    """Every record of ``topic`` up to its high watermark now.

    Not end_offsets(): Tansu answers it wrongly after batched produce; the high
    watermark that fetch responses carry is right.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if await _caught_up(consumer, partitions):
                break
    finally:
        await consumer.stop()
    return records


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        mark = consumer.highwater(tp)
        if mark is None or await consumer.position(tp) < mark:
            return False
    return True


def result_ids(records: list[Any]) -> list[str]:
    return [json.loads(record.value)["event_id"] for record in records]


async def partition_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """{partition: offset after its last record}, read off the records themselves."""
    ends: dict[int, int] = {}
    for record in await read_all(bootstrap, topic):
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


async def totals_disagreeing(database_url: str) -> list[str]:
    """Memory keys whose running totals differ from the sums of their stored rows.

    Unscored rows (not measured) count nowhere; rows measured alone (exact, skipped)
    count in the exact totals too.
    """
    found = await rows(
        database_url,
        """
        SELECT coalesce(t.memory_key, s.memory_key), t.cumulative_importance, t.runs,
               t.exact_importance, t.exact_runs, s.total, s.n, s.exact_total, s.exact_n
        FROM memory_importance t
        FULL OUTER JOIN (
            SELECT memory_key, sum(importance) AS total, count(*) AS n,
                   coalesce(sum(importance) FILTER (WHERE row_kind IN ('exact', 'skipped')), 0)
                     AS exact_total,
                   count(*) FILTER (WHERE row_kind IN ('exact', 'skipped')) AS exact_n
            FROM memory_scores WHERE row_kind <> 'unscored' GROUP BY memory_key
        ) s ON s.memory_key = t.memory_key
        """,
    )

    def close(a: float | None, b: float | None) -> bool:
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)

    return sorted(
        key
        for key, cumulative, runs, exact, exact_runs, total, n, exact_total, exact_n in found
        if runs != n
        or exact_runs != exact_n
        or not close(cumulative, total)
        or not close(exact, exact_total)
    )


async def partial_runs(database_url: str) -> list[str]:
    """Runs whose memory or response rows are not all there."""
    found = await rows(
        database_url,
        """
        SELECT r.event_id FROM scoring_runs r
        WHERE r.memory_count <> (SELECT count(*) FROM memory_scores m WHERE m.run_id = r.id)
           OR r.response_count <> (SELECT count(*) FROM response_scores s WHERE s.run_id = r.id)
        """,
    )
    return sorted(event_id for (event_id,) in found)


@dataclass(frozen=True)
class Ledger:
    """What the parts say about a run; `Ledger.expected(n)` is a run with nothing lost."""

    runs: int
    distinct_event_ids: int
    results_published_distinct: int
    results_missing: int
    dlq: int
    committed_behind: dict[int, int]
    totals_disagreeing: list[str]
    partial_runs: list[str]

    @classmethod
    def expected(cls, events: int) -> Ledger:
        return cls(events, events, events, 0, 0, {}, [], [])

    @classmethod
    async def read(
        cls,
        *,
        bootstrap: str,
        database_url: str,
        topics: Any,
        group_id: str,
        events: list[dict[str, Any]],
    ) -> tuple[Ledger, dict[str, int]]:
        """The ledger, and figures worth reporting (republished results and the like)."""
        published = result_ids(await read_all(bootstrap, topics.output))
        wanted = {result_event_id(e["event_id"]) for e in events}
        ends = await partition_ends(bootstrap, topics.input)
        committed = await committed_offsets(bootstrap, group_id, topics.input)
        ledger = cls(
            runs=await stored_runs(database_url),
            distinct_event_ids=int(
                await scalar(database_url, "SELECT count(DISTINCT event_id) FROM scoring_runs")
            ),
            results_published_distinct=len(set(published) & wanted),
            results_missing=len(wanted - set(published)),
            dlq=len(await read_all(bootstrap, topics.dlq)),
            committed_behind={
                p: end - committed.get(p, 0) for p, end in ends.items() if committed.get(p) != end
            },
            totals_disagreeing=await totals_disagreeing(database_url),
            partial_runs=await partial_runs(database_url),
        )
        figures = {
            "results_published": len(published),
            "results_republished": len(published) - len(set(published)),
        }
        return ledger, figures

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def metrics_of(worker: WorkerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's /metrics as {(sample name, sorted labels): value}."""
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=5) as http:
        text = (await http.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def metric(worker: WorkerProcess, name: str, **labels: str) -> float | None:
    try:
        samples = await metrics_of(worker)
    except httpx.HTTPError:
        return None
    return samples.get((name, tuple(sorted(labels.items()))))


async def readyz(worker: WorkerProcess) -> int:
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        return (await http.get("/readyz")).status_code


def log_entries(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's JSON log lines; a line that is not JSON comes back as {"raw": line}."""
    entries = []
    for line in worker.logs().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            entry = {"raw": line}
        entries.append(entry if isinstance(entry, dict) else {"raw": line})
    return entries


def outcomes(worker: WorkerProcess) -> Counter[str]:
    """How many events this worker's log says it finished, by outcome."""
    return Counter(
        str(e.get("outcome")) for e in log_entries(worker) if e.get("event") == "event scored"
    )


def trouble(worker: WorkerProcess) -> list[str]:
    """Log lines that speak of a crash or an unhandled error: error levels, tracebacks."""
    return [
        json.dumps(e)[:600]
        for e in log_entries(worker)
        if e.get("level") in ("error", "critical")
        or "exc" in e
        or "Traceback" in json.dumps(e)
        or ("raw" in e and e["raw"].strip())
    ]


def tail(*workers: WorkerProcess, chars: int = 3000) -> str:
    return "\n".join(f"--- {w.log_path.name} ---\n{w.logs()[-chars:]}" for w in workers)


async def reference_matrices(model_url: str, events: list[dict[str, Any]]) -> Matrices:
    """What a clean run scores: the worker's own scorer against an unperturbed server."""
    from worker.events import decode_event
    from worker.inference.client import ClientConfig, InferenceClient
    from worker.inference.limiter import InflightLimiter
    from worker.inference.scorer import ConversationScorer, ScoringOptions
    from worker.settings import Settings

    defaults = Settings()
    limiter = InflightLimiter(defaults.max_inflight_requests, defaults.max_inflight_tokens)
    async with InferenceClient(ClientConfig(base_urls=[model_url]), limiter) as client:
        scorer = ConversationScorer(
            client,
            ScoringOptions(
                default_model="synthetic", metric=defaults.metric, noise_floor=defaults.noise_floor
            ),
        )
        matrices = {}
        for event in events:
            decoded = decode_event(json.dumps(event).encode(), max_bytes=defaults.max_event_bytes)
            result = await scorer.score(decoded)
            matrices[result.event_id] = [list(map(float, row)) for row in result.score.matrix]
    return matrices


async def stored_matrices(database_url: str) -> Matrices:
    """{event_id: divergence matrix (memories x responses)} as PostgreSQL holds them."""
    found = await rows(
        database_url,
        """
        SELECT r.event_id, m.divergences FROM scoring_runs r
        JOIN memory_scores m ON m.run_id = r.id ORDER BY r.event_id, m.memory_index
        """,
    )
    matrices: Matrices = {}
    for event_id, divergences in found:
        matrices.setdefault(event_id, []).append(list(divergences))
    return matrices


async def exit_code(worker: WorkerProcess, *, within: float) -> int | None:
    """The worker's exit code once it exits, or None if it is still running after ``within``."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert worker.proc is not None
        code = worker.proc.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return None


async def until_finished(
    worker: WorkerProcess,
    database_url: str,
    bootstrap: str,
    topics: TopicNames,
    group_id: str,
    *,
    stored: int,
    events: int,
) -> None:
    """Until ``stored`` runs are in PostgreSQL and all ``events`` offsets committed."""

    async def done() -> bool:
        committed = sum((await committed_offsets(bootstrap, group_id, topics.input)).values())
        return await stored_runs(database_url) >= stored and committed >= events

    await eventually(done, within=150, what="every event finished", worker=worker)
