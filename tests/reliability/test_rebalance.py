"""Group membership changing mid-run: partitions move, nothing is lost or stored twice."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import WorkerProcess, committed_offsets, eventually, produce
from tests.reliability.conftest import ModelServerFactory
from tests.reliability.support import (
    Ledger,
    exit_code,
    metric,
    outcomes,
    stored_runs,
    tail,
    trouble,
)

pytestmark = pytest.mark.slow


def _assigned_count(worker: WorkerProcess) -> int:
    return worker.logs().count('"partitions assigned"')


async def _finished(
    worker: WorkerProcess,
    database_url: str,
    bootstrap: str,
    topics: TopicNames,
    group_id: str,
    n: int,
) -> None:
    async def done() -> bool:
        committed = sum((await committed_offsets(bootstrap, group_id, topics.input)).values())
        return await stored_runs(database_url) >= n and committed >= n

    await eventually(done, within=150, what=f"{n} events stored and committed", worker=worker)


@pytest.mark.timeout(240)
async def test_a_worker_joining_and_leaving_mid_run_loses_and_duplicates_nothing(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    # About 10 s of work for one worker: time for the second to join, score and leave.
    server = make_model_server(request_overhead_ms=150)
    events = [generated_event(1000 + s, memories=3) for s in range(90)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    options: dict[str, Any] = {"MEMSCORE_MAX_INFLIGHT_CONVERSATIONS": "4"}
    first = make_worker(model_url=server.base_url, **options)
    first.start()

    async def under_way() -> bool:
        return await stored_runs(migrated) >= 5

    await eventually(under_way, within=60, what="scoring under way", worker=first)
    second = make_worker(model_url=server.base_url, **options)
    second.start()

    async def second_scored() -> bool:
        return sum(outcomes(second).values()) >= 3

    await eventually(second_scored, within=60, what="the second worker scoring", worker=second)
    second.signal(signal.SIGTERM)
    assert await exit_code(second, within=30) == 0, tail(second)

    await _finished(first, migrated, kafka_bootstrap, topic_names, group_id, len(events))
    assert first.stop() == 0, tail(first)
    ledger, figures = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    report = {
        "events": len(events),
        "scored_by_first": sum(outcomes(first).values()),
        "scored_by_second": sum(outcomes(second).values()),
        "first_assignments": _assigned_count(first),
        **figures,
    }
    print(f"\nRELIABILITY rebalance {json.dumps(report)}")
    assert ledger == Ledger.expected(len(events)), f"{ledger.as_dict()}\n{tail(first, second)}"
    assert trouble(first) + trouble(second) == []


@pytest.mark.timeout(240)
async def test_a_rebalance_during_a_model_server_outage_does_not_leave_partitions_paused(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    server = make_model_server(request_overhead_ms=40)
    events = [generated_event(1100 + s, memories=2) for s in range(30)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    options: dict[str, Any] = {"MEMSCORE_MAX_INFLIGHT_CONVERSATIONS": "4"}
    first = make_worker(model_url=server.base_url, **options)
    first.start()

    async def under_way() -> bool:
        return await stored_runs(migrated) >= 3

    await eventually(under_way, within=60, what="scoring under way", worker=first)
    server.kill()

    async def paused() -> bool:
        return await metric(first, "memscore_consumer_paused") == 1.0 and (
            await metric(first, "memscore_dependency_up", dependency="vllm") == 0.0
        )

    await eventually(paused, within=30, what="paused with vllm down", worker=first)
    # The join revokes every partition of the first worker, whose in-flight events are
    # stuck retrying the dead server: they are cancelled once the drain time is up.
    second = make_worker(model_url=server.base_url, **options)
    second.start()
    assigned_before = _assigned_count(first)

    async def reassigned() -> bool:
        return _assigned_count(first) > assigned_before and _assigned_count(second) > 0

    await eventually(reassigned, within=60, what="partitions reassigned", worker=first)
    server.start()

    await _finished(first, migrated, kafka_bootstrap, topic_names, group_id, len(events))
    assert first.stop() == 0, tail(first)
    assert second.stop() == 0, tail(second)
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), f"{ledger.as_dict()}\n{tail(first, second)}"
