"""Faults that combine, against a real worker process (issue #11).

The consumer's logic under thousands of generated fault schedules is tested by
tests/simulation; these check what only a real process shows: the worker's own
metrics and logs after a mixed failure, and what it exports with credentials in a
model-server URL.
"""

from __future__ import annotations

import httpx
import pytest

from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import eventually, produce
from tests.reliability.misbehaving_proxy import Fault, MisbehavingProxy
from tests.reliability.support import metric, read_all, tail, until_finished

pytestmark = pytest.mark.slow


async def test_a_503_then_a_context_length_refusal_parks_the_event_and_intake_resumes(
    make_worker: WorkerFactory,
    synthetic_model_url: str,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    # The event's requests answer 503 until the client gives up (2 attempts), so the
    # event retries at its own level with vllm reported failing; then 400. It used to
    # leave vllm marked down with nobody retrying it: intake paused for good while the
    # probes stayed green.
    doomed = generated_event(950, memories=2)
    marker = "mixed-failure-5a1c"
    doomed["system_prompt"] += f" ({marker})"

    def plan(body: bytes, seen_before: int) -> Fault | None:
        if marker.encode() not in body:
            return None
        return Fault.SERVICE_UNAVAILABLE if seen_before < 2 else Fault.CONTEXT_LENGTH

    with MisbehavingProxy(synthetic_model_url, plan) as proxy:
        await produce(kafka_bootstrap, topic_names.input, [doomed])
        worker = make_worker(model_url=proxy.base_url, MEMSCORE_VLLM_MAX_ATTEMPTS="2")
        worker.start()

        async def parked() -> bool:
            return bool(await read_all(kafka_bootstrap, topic_names.dlq, wait_seconds=1))

        await eventually(parked, within=90, what="the event parked", worker=worker)
        assert proxy.faults[Fault.SERVICE_UNAVAILABLE] >= 2, tail(worker)

        async def open_again() -> bool:
            paused = await metric(worker, "memscore_consumer_paused")
            up = await metric(worker, "memscore_dependency_up", dependency="vllm")
            return paused == 0 and up == 1

        await eventually(open_again, within=30, what="intake open, vllm up", worker=worker)
        later = [generated_event(960 + s, memories=2) for s in range(4)]
        await produce(kafka_bootstrap, topic_names.input, later)
        await until_finished(
            worker, migrated, kafka_bootstrap, topic_names, group_id, stored=4, events=5
        )
        assert worker.stop() == 0, tail(worker)
    dead = await read_all(kafka_bootstrap, topic_names.dlq)
    classes = [dict(r.headers)["memscore.error.class"].decode() for r in dead]
    assert classes == ["context_length"], tail(worker)
    reason = dict(dead[0].headers)["memscore.error.reason"].decode()
    assert "8192" in reason
    assert "Please reduce" not in reason  # the server's own words never reach the DLQ


URL_USER = "memscore-svc"
URL_PASSWORD = "url-Pa55word-SECRET-c0de"


async def test_credentials_in_a_model_server_url_never_reach_metrics_or_logs(
    make_worker: WorkerFactory,
    synthetic_model_url: str,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    host = synthetic_model_url.split("://", 1)[1]
    events = [generated_event(970 + s, memories=2) for s in range(3)]
    await produce(kafka_bootstrap, topic_names.input, events)
    worker = make_worker(model_url=f"http://{URL_USER}:{URL_PASSWORD}@{host}")
    worker.start()
    await until_finished(
        worker, migrated, kafka_bootstrap, topic_names, group_id, stored=3, events=3
    )
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=5) as http:
        exported = (await http.get("/metrics")).text
    assert worker.stop() == 0, tail(worker)
    port = host.rsplit(":", 1)[1]
    assert f'endpoint="127.0.0.1:{port}"' in exported  # named by host and port
    assert URL_PASSWORD not in exported
    assert URL_USER not in exported
    assert URL_PASSWORD not in worker.logs()
    assert URL_USER not in worker.logs()
