"""Stopping the worker when a graceful drain is not what the operator wants.

The graceful path (SIGTERM mid-run: drain, commit, exit 0, nothing redone) is
tests/integration/test_daemon.py::test_sigterm_drains_commits_and_nothing_is_redone_after_restart.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from devstack.ports import free_port
from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import committed_offsets, eventually, produce
from tests.reliability.conftest import ModelServerFactory
from tests.reliability.support import Ledger, exit_code, stored_runs, tail

pytestmark = pytest.mark.slow

GRACE_SECONDS = 30


async def test_a_second_sigterm_exits_at_once_and_a_restart_finishes_the_work(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    # Each request takes 4 s and an event makes two rounds of them: draining the events
    # in flight would take several seconds more than the 3 s allowed.
    slow = make_model_server(request_overhead_ms=4000)
    events = [generated_event(1200 + s, memories=3) for s in range(4)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    options = {
        "MEMSCORE_MAX_INFLIGHT_CONVERSATIONS": "4",
        "MEMSCORE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
    }
    worker = make_worker(model_url=slow.base_url, **options)
    worker.start()

    async def draining() -> bool:
        return '"draining"' in worker.logs()

    async def in_flight() -> bool:
        return '"partitions assigned"' in worker.logs()

    await eventually(in_flight, within=60, what="partitions assigned", worker=worker)
    await asyncio.sleep(1.0)  # the first requests are out
    worker.signal(signal.SIGTERM)
    await eventually(draining, within=10, what="the drain to begin", worker=worker)
    second_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await exit_code(worker, within=GRACE_SECONDS)
    took = time.monotonic() - second_at
    assert (code, took < 3.0) == (0, True), f"exit {code} after {took:.1f} s\n{tail(worker)}"
    assert '"abandoned unfinished events"' in worker.logs(), tail(worker)

    restarted = make_worker(model_url=slow.base_url, **options)
    restarted.start()

    async def finished() -> bool:
        committed = await committed_offsets(kafka_bootstrap, group_id, topic_names.input)
        return await stored_runs(migrated) >= len(events) and sum(committed.values()) >= len(events)

    await eventually(finished, within=120, what="the rest finished", worker=restarted)
    assert restarted.stop() == 0, tail(restarted)
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), f"{ledger.as_dict()}\n{tail(worker, restarted)}"


async def test_sigterm_while_waiting_for_an_unreachable_broker_exits_at_once(
    make_worker: WorkerFactory,
) -> None:
    # Nothing listens there: start-up retries for about 90 s before it gives up.
    worker = make_worker(bootstrap=f"127.0.0.1:{free_port('127.0.0.1')}")
    worker.start()

    async def retrying() -> bool:
        return '"kafka not reachable yet"' in worker.logs()

    await eventually(retrying, within=30, what="start-up retrying kafka", worker=worker)
    signalled_at = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = await exit_code(worker, within=GRACE_SECONDS)
    took = time.monotonic() - signalled_at
    assert (code, took < 3.0) == (0, True), f"exit {code} after {took:.1f} s\n{tail(worker)}"
