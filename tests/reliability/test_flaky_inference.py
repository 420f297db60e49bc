"""Slow and misbehaving model servers: retried or failed cleanly, never a wrong score stored.

Every stored divergence matrix is compared with what a clean run of the same events
scores (the worker's own scorer against an unperturbed synthetic server: the synthetic
model is deterministic, so any difference is a corrupted answer that got through).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import produce
from tests.reliability.conftest import ModelServerFactory
from tests.reliability.misbehaving_proxy import Fault, MisbehavingProxy
from tests.reliability.support import (
    Ledger,
    metric,
    read_all,
    reference_matrices,
    stored_matrices,
    tail,
    until_finished,
)

pytestmark = pytest.mark.slow


async def test_error_answers_and_timeouts_are_retried_and_scores_match_a_clean_run(
    make_worker: WorkerFactory,
    make_model_server: ModelServerFactory,
    synthetic_model_url: str,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    # A quarter of the answers are 500/503 and a sixth stall past the worker's timeout.
    server = make_model_server(
        error_rate=0.25, latency_spike_rate=0.15, latency_spike_seconds=3.0, fault_seed=7
    )
    events = [generated_event(600 + s, memories=3) for s in range(12)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    worker = make_worker(model_url=server.base_url, MEMSCORE_VLLM_TIMEOUT_SECONDS="1")
    worker.start()
    await until_finished(
        worker,
        migrated,
        kafka_bootstrap,
        topic_names,
        group_id,
        stored=len(events),
        events=len(events),
    )
    retries = await metric(worker, "memscore_retries_total", dependency="vllm")
    assert worker.stop() == 0, tail(worker)
    print(f"\nRELIABILITY flaky_server {json.dumps({'vllm_retries': retries})}")
    assert retries, "no retries: the injected faults never reached the worker"
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), f"{ledger.as_dict()}\n{tail(worker)}"
    assert await stored_matrices(migrated) == await reference_matrices(synthetic_model_url, events)


#: The corruptions a retry must see through (503 and a context-length refusal are the
#: mixed-failure tests' business, tests/reliability/test_mixed_failures.py).
_KINDS = [
    Fault.RESET_MID_BODY,
    Fault.TRUNCATED_JSON,
    Fault.SHORT_PROMPT_LOGPROBS,
    Fault.TOO_MANY_REQUESTS,
]


def _every_other_body_fails_once(body: bytes, seen_before: int) -> Fault | None:
    """The first attempt of every second distinct request fails, by each fault in turn.

    Per body, not per attempt: a retry of a corrupted request always goes through, so
    no request can exhaust its attempts by bad luck and the test cannot flake.
    """
    digest = hashlib.sha256(body).digest()
    if seen_before or digest[0] % 2:
        return None
    return _KINDS[digest[1] % len(_KINDS)]


async def test_corrupted_answers_are_retried_and_never_stored(
    make_worker: WorkerFactory,
    synthetic_model_url: str,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    events = [generated_event(700 + s, memories=3) for s in range(12)]
    with MisbehavingProxy(synthetic_model_url, _every_other_body_fails_once) as proxy:
        await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
        worker = make_worker(model_url=proxy.base_url)
        worker.start()
        await until_finished(
            worker,
            migrated,
            kafka_bootstrap,
            topic_names,
            group_id,
            stored=len(events),
            events=len(events),
        )
        assert worker.stop() == 0, tail(worker)
    faults = {fault.value: proxy.faults[fault] for fault in _KINDS}
    print(f"\nRELIABILITY corrupted_answers {json.dumps({'requests': proxy.requests, **faults})}")
    assert all(faults.values()), f"some fault never happened: {faults}"
    ledger, _ = await Ledger.read(
        bootstrap=kafka_bootstrap,
        database_url=migrated,
        topics=topic_names,
        group_id=group_id,
        events=events,
    )
    assert ledger == Ledger.expected(len(events)), f"{ledger.as_dict()}\n{tail(worker)}"
    assert await stored_matrices(migrated) == await reference_matrices(synthetic_model_url, events)


async def test_an_answer_that_stays_corrupt_parks_the_event_as_bad_response(
    make_worker: WorkerFactory,
    synthetic_model_url: str,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    good = [generated_event(800 + s, memories=2) for s in range(6)]
    garbled = generated_event(899, memories=2)
    marker = "always-garbled-7f3a"
    garbled["system_prompt"] += f" ({marker})"

    def plan(body: bytes, seen_before: int) -> Fault | None:
        return Fault.TRUNCATED_JSON if marker.encode() in body else None

    with MisbehavingProxy(synthetic_model_url, plan) as proxy:
        events = [*good[:3], garbled, *good[3:]]
        await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
        worker = make_worker(model_url=proxy.base_url)
        worker.start()
        await until_finished(
            worker,
            migrated,
            kafka_bootstrap,
            topic_names,
            group_id,
            stored=len(good),
            events=len(events),
        )
        assert worker.stop() == 0, tail(worker)
    dead = await read_all(kafka_bootstrap, topic_names.dlq)
    parked = {
        json.loads(r.value)["event_id"]: dict(r.headers)["memscore.error.class"].decode()
        for r in dead
    }
    assert parked == {garbled["event_id"]: "bad_response"}, tail(worker)
    assert await stored_matrices(migrated) == await reference_matrices(synthetic_model_url, good)
