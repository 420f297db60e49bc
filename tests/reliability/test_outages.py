"""Dependencies that really go away: the worker pauses, loses nothing, and resumes by itself.

The model server is SIGKILLed and started again on the same port; PostgreSQL is shut
down and started again on the same data directory; the broker is killed and comes back
empty (memory storage), as a Kafka cluster restored without its data would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.broker import Broker, create_topics
from devstack.postgres import EmbeddedPostgres
from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import WorkerProcess, committed_offsets, eventually, produce
from tests.reliability.conftest import ModelServerFactory
from tests.reliability.support import (
    Ledger,
    metric,
    read_all,
    readyz,
    result_ids,
    stored_runs,
    tail,
)
from worker.consumer.messages import result_event_id

pytestmark = pytest.mark.slow

EVENTS = 24
#: Long enough for the worker to notice, pause and retry many times; short enough for CI.
OUTAGE_SECONDS = 6.0


async def _paused_for(worker: WorkerProcess, dependency: str) -> bool:
    return await metric(worker, "memscore_consumer_paused") == 1.0 and (
        await metric(worker, "memscore_dependency_up", dependency=dependency) == 0.0
    )


async def _resumed(worker: WorkerProcess, dependency: str) -> bool:
    return await metric(worker, "memscore_consumer_paused") == 0.0 and (
        await metric(worker, "memscore_dependency_up", dependency=dependency) == 1.0
    )


async def _all_stored(worker: WorkerProcess, database_url: str, count: int) -> None:
    async def done() -> bool:
        return await stored_runs(database_url) >= count

    await eventually(done, within=120, what=f"{count} stored runs", worker=worker)


async def _all_committed(
    worker: WorkerProcess, bootstrap: str, group_id: str, topic: str, count: int
) -> None:
    async def done() -> bool:
        return sum((await committed_offsets(bootstrap, group_id, topic)).values()) >= count

    await eventually(done, within=60, what=f"{count} offsets committed", worker=worker)


async def test_model_server_killed_and_restarted_pauses_and_resumes_losing_nothing(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    server = make_model_server(request_overhead_ms=60)
    events = [generated_event(300 + s, memories=3) for s in range(EVENTS)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    worker = make_worker(model_url=server.base_url, MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="4")
    worker.start()

    async def some_stored() -> bool:
        return await stored_runs(migrated) >= 3

    await eventually(some_stored, within=60, what="scoring under way", worker=worker)
    server.kill()
    down_at = time.monotonic()

    async def paused() -> bool:
        return await _paused_for(worker, "vllm")

    await eventually(paused, within=30, what="paused with vllm down", worker=worker)
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    server.start()  # same port

    await _all_stored(worker, migrated, EVENTS)
    await _all_committed(worker, kafka_bootstrap, group_id, topic_names.input, EVENTS)

    async def resumed() -> bool:
        return await _resumed(worker, "vllm")

    await eventually(resumed, within=30, what="resumed with vllm up", worker=worker)
    assert worker.stop() == 0, tail(worker)
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(EVENTS), f"{ledger.as_dict()}\n{tail(worker)}"


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, to stop and start without disturbing the others."""
    # Not pytest's tmp_path: PostgreSQL runs as an unprivileged user that must reach it.
    root = Path(tempfile.mkdtemp(prefix="memscore-outage-pg-"))
    server = EmbeddedPostgres(root / "pgdata", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_postgres_stopped_and_started_pauses_fails_readiness_and_resumes(
    make_worker: WorkerFactory,
    own_postgres: EmbeddedPostgres,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    from worker.store import upgrade_schema

    database_url = await own_postgres.create_database("memscore_outage")
    await asyncio.to_thread(upgrade_schema, database_url)
    events = [generated_event(400 + s, memories=3) for s in range(EVENTS)]
    await produce(kafka_bootstrap, topic_names.input, events[:6])  # type: ignore[arg-type]
    worker = make_worker(database_url=database_url, MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="4")
    worker.start()
    await _all_stored(worker, database_url, 6)

    async def ready() -> bool:
        return await readyz(worker) == 200

    await eventually(ready, within=30, what="/readyz 200 before the outage", worker=worker)
    own_postgres.stop()
    # Published during the outage: scored, then held while the database is away.
    await produce(kafka_bootstrap, topic_names.input, events[6:])  # type: ignore[arg-type]

    async def paused_and_not_ready() -> bool:
        return await _paused_for(worker, "postgres") and await readyz(worker) == 503

    await eventually(paused_and_not_ready, within=30, what="paused and /readyz 503", worker=worker)
    await asyncio.sleep(OUTAGE_SECONDS / 2)
    assert await readyz(worker) == 503, tail(worker)
    own_postgres.start()

    await _all_stored(worker, database_url, EVENTS)
    await _all_committed(worker, kafka_bootstrap, group_id, topic_names.input, EVENTS)

    async def resumed_and_ready() -> bool:
        return await _resumed(worker, "postgres") and await readyz(worker) == 200

    await eventually(resumed_and_ready, within=30, what="resumed and /readyz 200", worker=worker)
    assert worker.stop() == 0, tail(worker)
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=database_url,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(EVENTS), f"{ledger.as_dict()}\n{tail(worker)}"


async def test_broker_restarted_empty_worker_reconnects_and_scores_new_events(
    make_worker: WorkerFactory,
    migrated: str,
    tmp_path: Path,
    group_id: str,
) -> None:
    topics = TopicNames(input="closed", output="scored", dlq="closed-dlq")
    partitions = {topics.input: 3, topics.output: 1, topics.dlq: 1}
    broker = Broker(log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        await create_topics(broker.bootstrap_servers, partitions)
        worker = make_worker(bootstrap=broker.bootstrap_servers, topics=topics)
        worker.start()
        # The same conversations before and after: the same partitions, filled to the
        # same offsets again on the empty broker.
        before = [generated_event(500 + s, memories=2) for s in range(9)]
        after = [generated_event(500 + s, memories=2, event_id=f"after-{s}") for s in range(9)]
        await produce(broker.bootstrap_servers, topics.input, before)  # type: ignore[arg-type]
        await _all_stored(worker, migrated, len(before))
        await _all_committed(worker, broker.bootstrap_servers, group_id, topics.input, len(before))

        broker.stop(grace=0.0)  # killed: the worker's connections are refused meanwhile
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        broker.start()  # same port, no topics, no offsets, no groups
        await create_topics(broker.bootstrap_servers, partitions)
        await produce(broker.bootstrap_servers, topics.input, after)  # type: ignore[arg-type]

        await _all_stored(worker, migrated, len(before) + len(after))
        await _all_committed(worker, broker.bootstrap_servers, group_id, topics.input, len(after))
        assert worker.proc is not None
        assert worker.proc.poll() is None, tail(worker)
        published = result_ids(await read_all(broker.bootstrap_servers, topics.output))
        assert worker.stop() == 0, tail(worker)
    finally:
        broker.stop()
    assert sorted(set(published)) == sorted(result_event_id(e["event_id"]) for e in after), (
        json.dumps(published) + tail(worker)
    )
