"""`memscore run` end to end: real broker, real PostgreSQL, synthetic model server."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.model_server import running_model_server
from devstack.samples import generated_event
from tests.integration.harness import (
    committed_offsets,
    eventually,
    produce,
    read_topic,
    scalar,
)
from worker.consumer.messages import result_event_id

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slow_model_url() -> Iterator[str]:
    """Every request takes 0.4 s: a SIGTERM surely lands while work is in flight."""
    with running_model_server("synthetic", request_overhead_ms=400) as url:
        yield url


async def runs(database_url: str) -> int:
    return int(await scalar(database_url, "SELECT count(*) FROM scoring_runs"))


async def test_events_are_scored_stored_published_and_committed(
    make_worker: Any, migrated: str, kafka_bootstrap: str, topic_names: Any, group_id: str
) -> None:
    events = [generated_event(seed, memories=3) for seed in range(12)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    worker = make_worker(MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="4")
    worker.start()

    async def all_stored() -> bool:
        return await runs(migrated) == len(events)

    await eventually(all_stored, within=120, what="12 stored runs", worker=worker)
    published = await read_topic(kafka_bootstrap, topic_names.output, expected=len(events))
    assert sorted(json.loads(r.value)["event_id"] for r in published) == sorted(
        result_event_id(e["event_id"]) for e in events
    )

    async def all_committed() -> bool:
        offsets = await committed_offsets(kafka_bootstrap, group_id, topic_names.input)
        return sum(offsets.values()) == len(events)

    await eventually(all_committed, within=30, what="offsets committed to the end", worker=worker)
    assert worker.stop() == 0


async def test_poison_input_goes_to_the_dlq_and_the_worker_carries_on(
    make_worker: Any, migrated: str, kafka_bootstrap: str, topic_names: Any
) -> None:
    too_big = generated_event(1, memories=2, words_per_memory=600)
    schema_error = {**generated_event(2), "entries": "not a list"}
    good = generated_event(3)
    await produce(
        kafka_bootstrap,
        topic_names.input,
        [b"{not json", schema_error, too_big, good],
        headers=[("trace-id", b"abc")],
    )
    worker = make_worker(MEMSCORE_MAX_EVENT_BYTES="4096")
    worker.start()
    dead = await read_topic(kafka_bootstrap, topic_names.dlq, expected=3, wait_seconds=90)

    async def good_stored() -> bool:
        return await runs(migrated) == 1

    await eventually(good_stored, within=60, what="the good event stored", worker=worker)
    classes = sorted(dict(r.headers)["memscore.error.class"].decode() for r in dead)
    assert classes == ["decode", "schema", "too_large"]
    for record in dead:
        headers = dict(record.headers)
        assert headers["trace-id"] == b"abc"
        assert headers["memscore.source.topic"] == topic_names.input.encode()
        assert int(headers["memscore.source.offset"]) >= 0
        assert headers["memscore.error.reason"]
    assert worker.stop() == 0


async def test_a_redelivered_event_changes_nothing(
    make_worker: Any, migrated: str, kafka_bootstrap: str, topic_names: Any
) -> None:
    event = generated_event(7, memories=2)
    worker = make_worker()
    worker.start()
    await produce(kafka_bootstrap, topic_names.input, [event])

    async def stored() -> bool:
        return await runs(migrated) == 1

    await eventually(stored, within=60, what="first delivery stored", worker=worker)
    before = await scalar(migrated, "SELECT sum(cumulative_importance) FROM memory_importance")
    await produce(kafka_bootstrap, topic_names.input, [event])
    published = await read_topic(kafka_bootstrap, topic_names.output, expected=2, wait_seconds=60)
    assert len(published) == 2  # republished: consumers dedupe on event_id
    assert len({json.loads(r.value)["event_id"] for r in published}) == 1
    assert await runs(migrated) == 1
    assert await scalar(migrated, "SELECT sum(cumulative_importance) FROM memory_importance") == (
        before
    )
    assert await scalar(migrated, "SELECT max(runs) FROM memory_importance") == 1
    assert worker.stop() == 0


async def test_sigterm_drains_commits_and_nothing_is_redone_after_restart(
    make_worker: Any,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: Any,
    group_id: str,
    slow_model_url: str,
) -> None:
    events = [generated_event(100 + s, memories=4) for s in range(16)]
    await produce(kafka_bootstrap, topic_names.input, events)  # type: ignore[arg-type]
    worker = make_worker(model_url=slow_model_url, MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="4")
    worker.start()

    async def some_stored() -> bool:
        return await runs(migrated) >= 1

    await eventually(some_stored, within=60, what="scoring under way", worker=worker)
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    stored = await runs(migrated)
    assert 0 < stored < len(events)  # the signal came mid-run
    offsets = await committed_offsets(kafka_bootstrap, group_id, topic_names.input)
    assert sum(offsets.values()) == stored  # what is committed is exactly what is stored

    restarted = make_worker(model_url=slow_model_url)
    restarted.start()

    async def all_stored() -> bool:
        return await runs(migrated) == len(events)

    await eventually(all_stored, within=120, what="the rest stored", worker=restarted)
    assert restarted.stop() == 0
    duplicates = await read_topic(
        kafka_bootstrap, topic_names.output, expected=len(events) + 1, wait_seconds=5
    )
    assert len(duplicates) == len(events)  # nothing was scored twice


async def test_metrics_and_health_endpoints(
    make_worker: Any, migrated: str, kafka_bootstrap: str, topic_names: Any
) -> None:
    worker = make_worker()
    worker.start()
    await produce(kafka_bootstrap, topic_names.input, [generated_event(42)])

    async def stored() -> bool:
        return await runs(migrated) == 1

    await eventually(stored, within=60, what="one stored run", worker=worker)
    async with httpx.AsyncClient(base_url=worker.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert ready.status_code == 200, ready.text
    assert 'memscore_events_consumed_total{outcome="scored"} 1.0' in metrics
    assert "memscore_build_info{" in metrics
    assert worker.stop() == 0


def _names_used_in_deploy() -> set[str]:
    """memscore_* metric names read by the dashboard and the alert rules."""
    import yaml

    from tests.deploy.promql import metric_names

    root = Path(__file__).parents[2] / "deploy"
    exprs = [
        target["expr"]
        for panel in json.loads((root / "grafana" / "memscore.json").read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    rules = yaml.safe_load((root / "prometheus" / "rules.yaml").read_text())
    exprs += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    names = set().union(*(metric_names(expr) for expr in exprs))
    # Recorded series (level:metric:operation) are produced by the rules themselves.
    return {n for n in names if n.startswith("memscore_") and ":" not in n}


async def test_every_metric_the_dashboard_and_rules_read_is_served_by_a_running_worker(
    make_worker: Any, migrated: str
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    worker = make_worker()
    worker.start()

    async def serving() -> bool:
        try:
            async with httpx.AsyncClient(base_url=worker.base_url) as http:
                return (await http.get("/metrics")).status_code == 200
        except httpx.TransportError:
            return False

    await eventually(serving, within=60, what="/metrics answering", worker=worker)
    async with httpx.AsyncClient(base_url=worker.base_url) as http:
        text = (await http.get("/metrics")).text
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_count", "_sum"],
        "info": ["_info"],
    }
    served = {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in suffixes.get(family.type, [""])
    }
    used = _names_used_in_deploy()
    assert len(used) > 20
    assert used - served == set()
    assert worker.stop() == 0


async def test_out_of_order_completion_in_one_partition_never_commits_past_unfinished_work(
    make_worker: Any,
    migrated: str,
    kafka_bootstrap: str,
    kafka_topics: Any,
    topic_names: Any,
    group_id: str,
    slow_model_url: str,
) -> None:
    single = (await kafka_topics(input=1))["input"]
    # Big and small conversations alternate, so later offsets finish first.
    events = [generated_event(500 + s, memories=8 if s % 3 == 0 else 1) for s in range(15)]
    await produce(kafka_bootstrap, single, events)  # type: ignore[arg-type]
    worker = make_worker(
        model_url=slow_model_url,
        MEMSCORE_INPUT_TOPIC=single,
        MEMSCORE_MAX_INFLIGHT_CONVERSATIONS="6",
    )
    worker.start()

    async def stored_offsets() -> set[int]:
        rows = await scalar(
            migrated, "SELECT coalesce(array_agg(source_offset), '{}') FROM scoring_runs"
        )
        return set(rows)

    checks = 0
    while len(await stored_offsets()) < len(events):
        committed = (await committed_offsets(kafka_bootstrap, group_id, single)).get(0, 0)
        stored = await stored_offsets()
        # Safety: every offset below the committed one is stored.
        assert set(range(committed)) <= stored, (committed, sorted(stored))
        checks += 1
        assert checks < 400, worker.logs()[-3000:]
    order = await scalar(
        migrated, "SELECT array_agg(source_offset ORDER BY created_at, id) FROM scoring_runs"
    )
    assert order != sorted(order)  # completion really was out of order

    async def all_committed() -> bool:
        offsets = await committed_offsets(kafka_bootstrap, group_id, single)
        return offsets.get(0) == len(events)

    await eventually(all_committed, within=30, what="offset 15 committed", worker=worker)
    assert worker.stop() == 0
