"""Real vLLM saying no, and real vLLM going away: what the worker does with each.

- an unknown model name: vLLM answers 404 NotFoundError; a deployment naming a model its
  servers do not serve (yet) is waited out, never dead-lettered, and scored once fixed;
- the server stopped and started again mid-run: the outage is waited out, nothing lost.
(A conversation over max_model_len is in test_daemon.py: it shares that module's run.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from devstack.samples import generated_event
from devstack.vllm_cpu import VLLMServer
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import eventually, produce
from tests.reliability.support import Ledger, read_all, stored_runs, tail

pytestmark = pytest.mark.vllm

# Long enough for several rounds of retries (MEMSCORE_RETRY_MAX_SECONDS is 1 in tests).
WAITED_OUT_SECONDS = 8


async def test_an_unknown_model_is_waited_out_and_scored_once_the_name_is_fixed(
    make_worker: WorkerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: Any,
    group_id: str,
    vllm_url: str,
) -> None:
    events = [generated_event(700 + seed, memories=2, turns=1) for seed in range(3)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    wrong = make_worker(model_url=vllm_url, MEMSCORE_MODEL="smollm2-next")
    wrong.start()
    await asyncio.sleep(WAITED_OUT_SECONDS)
    waited = (
        await stored_runs(migrated),
        len(await read_all(kafka_bootstrap, topic_names.dlq, wait_seconds=1)),
    )
    assert wrong.stop() == 0, tail(wrong)
    assert waited == (0, 0), tail(wrong)

    fixed = make_worker(model_url=vllm_url, MEMSCORE_MODEL="smollm2")
    fixed.start()

    async def all_stored() -> bool:
        return await stored_runs(migrated) == len(events)

    await eventually(all_stored, within=300, what="all stored after the fix", worker=fixed)
    assert fixed.stop() == 0, tail(fixed)
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), tail(wrong, fixed)


async def test_vllm_stopped_and_restarted_mid_run_loses_nothing(
    make_worker: WorkerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: Any,
    group_id: str,
    vllm_server: VLLMServer,
    vllm_url: str,
) -> None:
    events = [generated_event(800 + seed, memories=3, turns=1) for seed in range(8)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    worker = make_worker(
        model_url=vllm_url, MEMSCORE_MODEL="smollm2", MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="2"
    )
    worker.start()

    async def scoring_under_way() -> bool:
        return await stored_runs(migrated) >= 1

    await eventually(scoring_under_way, within=300, what="a first stored run", worker=worker)
    await asyncio.to_thread(vllm_server.stop)
    down_at = time.monotonic()
    stored_before_outage = await stored_runs(migrated)
    await asyncio.to_thread(vllm_server.start)  # same port; ~1-2 min of outage
    outage = time.monotonic() - down_at

    async def all_stored() -> bool:
        return await stored_runs(migrated) == len(events)

    await eventually(all_stored, within=300, what="all stored after the outage", worker=worker)
    assert worker.stop() == 0, tail(worker)
    assert stored_before_outage < len(events)  # the outage did land mid-run
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), f"outage {outage:.0f} s\n{tail(worker)}"
