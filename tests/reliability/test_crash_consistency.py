"""SIGKILL at many moments: nothing lost, nothing counted twice.

One input of 200 events; a worker is killed without warning, started again, and
killed again, 14 times, then a last one finishes. The moments:

- "scoring": at a random point after the worker has stored a random number of
  events: requests in flight, rows being written, results published, offsets
  committed, all at once;
- "startup": while the process imports, connects and joins the group;
- "drain": after SIGTERM, while in-flight work finishes (a pod whose grace period
  ran out);
- "transaction": while the worker's write transactions are provably open. The test
  takes a real table lock on memory_importance, waits until PostgreSQL shows the
  worker's sessions waiting on it (run row inserted, totals not yet), kills, then
  releases the lock: PostgreSQL must roll those transactions back;
- "publish": between PostgreSQL's commit and the result's publication. The test
  freezes the broker (SIGSTOP), waits until more runs are stored (their publication
  cannot be acknowledged), kills, then thaws the broker.

The ledger at the end must be exactly that of a run with no crash at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.broker import Broker, create_topics
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import (
    WorkerProcess,
    committed_offsets,
    eventually,
    produce,
    scalar,
)
from tests.reliability.conftest import ModelServerFactory
from tests.reliability.support import (
    Ledger,
    outcomes,
    read_all,
    readyz,
    result_ids,
    shared_key_event,
    stored_runs,
    tail,
)

pytestmark = pytest.mark.slow

EVENTS = 200
INFLIGHT = 8
KILLS = (
    *("scoring", "startup", "transaction", "scoring", "drain", "publish", "scoring"),
    *("startup", "transaction", "scoring", "drain", "publish", "scoring", "scoring"),
)
SEED = int(os.environ.get("MEMSCORE_RELIABILITY_SEED", "0")) or random.SystemRandom().randrange(
    1, 10**6
)


async def _ready(worker: WorkerProcess) -> bool:
    try:
        return await readyz(worker) == 200
    except httpx.TransportError:  # not listening yet
        return False


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of this test's own: it gets frozen and thawed."""
    broker = Broker(log_path=tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _pid_of(broker: Broker) -> int:
    """The broker's process id, found by its listener address on the command line."""
    listener = f"tcp://{broker.bootstrap_servers}".encode()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if listener in cmdline.read_bytes() and b"tansu" in cmdline.read_bytes():
                return int(cmdline.parent.name)
    raise AssertionError(f"no tansu process listens on {broker.bootstrap_servers}")


@contextlib.asynccontextmanager
async def _importance_locked(database_url: str) -> AsyncIterator[None]:
    """memory_importance locked against writes until the block ends (then rolled back)."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn, conn.begin() as transaction:
            await conn.execute(sa.text("LOCK TABLE memory_importance IN EXCLUSIVE MODE"))
            yield
            await transaction.rollback()
    finally:
        await engine.dispose()


async def _blocked_transactions(database_url: str) -> int:
    """The worker's sessions waiting on a lock inside a transaction."""
    return int(
        await scalar(
            database_url,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'memscore' "
            "AND wait_event_type = 'Lock' AND state = 'active' "
            "AND datname = current_database()",
        )
    )


@pytest.mark.timeout(300)
async def test_sigkill_at_many_moments_loses_and_double_counts_nothing(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    migrated: str,
    broker: Broker,
    group_id: str,
) -> None:
    rng = random.Random(SEED)
    bootstrap = broker.bootstrap_servers
    topics = TopicNames(input="closed", output="scored", dlq="closed-dlq")
    await create_topics(bootstrap, {topics.input: 3, topics.output: 1, topics.dlq: 1})
    # 40 ms per request: each event takes a few round trips, so requests, transactions
    # and publications are always in flight when a kill lands.
    server = make_model_server(request_overhead_ms=40)
    events = [shared_key_event(seed, memories=2 + seed % 3) for seed in range(EVENTS)]
    await produce(bootstrap, topics.input, events)  # type: ignore[arg-type]
    options = {
        "MEMSCORE_MAX_INFLIGHT_CONVERSATIONS": str(INFLIGHT),
        "MEMSCORE_SHUTDOWN_GRACE_SECONDS": "10",
    }
    kill_log: list[dict[str, Any]] = []
    workers: list[WorkerProcess] = []
    started = time.monotonic()

    async def stored_at_least(worker: WorkerProcess, more: int) -> None:
        # Capped: with high draws the workers before it may have stored nearly everything.
        target = min(await stored_runs(migrated) + more, EVENTS)

        async def reached() -> bool:
            return await stored_runs(migrated) >= target

        await eventually(reached, within=120, what=f"{target} stored runs", worker=worker)

    async def kill_inside_transactions(worker: WorkerProcess, note: dict[str, Any]) -> None:
        async with _importance_locked(migrated):

            async def blocked() -> bool:
                return await _blocked_transactions(migrated) > 0

            await eventually(blocked, within=30, what="transactions waiting", worker=worker)
            note["open_transactions"] = await _blocked_transactions(migrated)
            stored = await stored_runs(migrated)
            worker.kill()
        note["stored_while_locked"] = await stored_runs(migrated) - stored

    for moment in KILLS:
        worker = make_worker(
            bootstrap=bootstrap, topics=topics, model_url=server.base_url, **options
        )
        workers.append(worker)
        worker.start()
        note: dict[str, Any] = {"moment": moment}
        if moment == "startup":
            await asyncio.sleep(rng.uniform(0.3, 2.5))
            worker.kill()
        elif moment == "scoring":
            await stored_at_least(worker, rng.randint(3, 20))
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            worker.kill()
        elif moment == "drain":
            await stored_at_least(worker, rng.randint(3, 20))
            worker.signal(signal.SIGTERM)
            await asyncio.sleep(rng.uniform(0.02, 0.2))
            note["drain_finished_first"] = worker.proc is not None and worker.proc.poll() == 0
            worker.kill()
        elif moment == "transaction":
            await stored_at_least(worker, rng.randint(3, 10))
            if await stored_runs(migrated) > EVENTS - INFLIGHT:
                # The last events may be stored before the lock is taken, and then no
                # transaction would ever wait on it: kill without the lock.
                note["too_few_left_to_lock"] = True
                worker.kill()
            else:
                await kill_inside_transactions(worker, note)
        else:  # publish
            await stored_at_least(worker, rng.randint(3, 10))
            pid = _pid_of(broker)
            os.kill(pid, signal.SIGSTOP)
            try:
                frozen_at = await stored_runs(migrated)
                # Events in flight go on being scored and stored; their publication hangs.
                for _ in range(100):
                    if await stored_runs(migrated) > frozen_at:
                        break
                    await asyncio.sleep(0.1)
                note["stored_while_broker_frozen"] = await stored_runs(migrated) - frozen_at
                worker.kill()
            finally:
                os.kill(pid, signal.SIGCONT)
        kill_log.append(note | await _state_after_kill(migrated, bootstrap, topics, group_id))

    last = make_worker(bootstrap=bootstrap, topics=topics, model_url=server.base_url, **options)
    workers.append(last)
    last.start()

    async def finished() -> bool:
        # The workers before it may have finished everything already; the last one
        # must still be up (consuming, /readyz 200) before it is asked to stop, or
        # the SIGTERM would land while the interpreter is still starting.
        if not await _ready(last):
            return False
        committed = await committed_offsets(bootstrap, group_id, topics.input)
        return await stored_runs(migrated) >= EVENTS and sum(committed.values()) >= EVENTS

    await eventually(finished, within=180, what="every event stored and committed", worker=last)
    assert last.stop() == 0, tail(last)

    ledger, figures = await Ledger.read(
        bootstrap=bootstrap,
        database_url=migrated,
        topics=topics,
        group_id=group_id,
        events=events,
    )
    redone = sum(outcomes(w)["duplicate"] for w in workers)
    report = {
        "seed": SEED,
        "events": EVENTS,
        "kills": len(KILLS),
        "redelivered_after_store": redone,
        "seconds": round(time.monotonic() - started, 1),
        **figures,
        "after_each_kill": kill_log,
    }
    print(f"\nRELIABILITY crash_consistency {json.dumps(report)}")
    assert ledger == Ledger.expected(EVENTS), (
        f"seed {SEED}: {ledger.as_dict()}\n{json.dumps(report)}\n{tail(*workers[-2:])}"
    )


async def _state_after_kill(
    database_url: str, bootstrap: str, topics: TopicNames, group_id: str
) -> dict[str, Any]:
    """Where the kill left things: stored but not committed, stored but not published."""
    stored = await stored_runs(database_url)
    committed = sum((await committed_offsets(bootstrap, group_id, topics.input)).values())
    published = len(set(result_ids(await read_all(bootstrap, topics.output, wait_seconds=5))))
    return {
        "stored": stored,
        "stored_not_committed": stored - committed,
        "stored_not_published": stored - published,
    }
