"""Hostile records at the daemon: each parked on the DLQ with a bounded reason, none fatal.

The decoder's own fuzzing lives in tests/unit; here the records go through the real
broker into a running worker, between good events that must still be scored.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.fixtures.worker import WorkerFactory
from tests.integration.harness import committed_offsets, eventually
from tests.reliability.support import exit_code, log_entries, read_all, stored_runs, tail
from worker.consumer.dead_letters import VALUE_DROPPED_HEADER as VALUE_DROPPED
from worker.consumer.messages import MAX_REASON_CHARS

pytestmark = pytest.mark.slow

MAX_EVENT_BYTES = 65_536
#: Text that must never come back in a DLQ reason (it stands for users' words).
MARKER = "HOSTILE-MARKER-4b1d"


def _event(seed: int, **changes: Any) -> dict[str, Any]:
    event = generated_event(seed, memories=2)
    event["entries"][0]["content"] = f"{MARKER} {event['entries'][0]['content']}"
    event.update(changes)
    return event


def _just_over_the_limit() -> bytes:
    event = _event(901)
    base = len(json.dumps(event).encode())
    event["entries"][1]["content"] += "x" * (MAX_EVENT_BYTES + 1 - base)
    value = json.dumps(event).encode()
    assert len(value) == MAX_EVENT_BYTES + 1
    return value


def _encoded(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


#: Cases produced with no key at all.
KEYLESS = frozenset({"tombstone_without_key"})


def _hostile() -> dict[str, tuple[bytes | None, str]]:
    """{case: (record value, the DLQ error class it must get)}."""
    duplicate_keys = _event(902)
    duplicate_keys["entries"][1]["key"] = duplicate_keys["entries"][0]["key"]
    unknown_entry = _event(903)
    unknown_entry["entries"][0]["type"] = "telepathy"
    content_not_text = _event(904)
    content_not_text["entries"][0]["content"] = {"text": MARKER}
    return {
        "invalid_utf8": (
            b'{"event_id": "\xff\xfe", "system_prompt": "' + MARKER.encode() + b'"}',
            "decode",
        ),
        "nested_30000_deep": (b"[" * 30_000 + b"]" * 30_000, "decode"),
        "one_byte_over_max_event_bytes": (_just_over_the_limit(), "too_large"),
        "nan_literal": (_encoded(_event(905))[:-1] + b', "score": NaN}', "decode"),
        "number_out_of_range": (b'{"event_id": 1e999999}', "decode"),
        "binary_garbage": (bytes(range(256)) * 4, "decode"),
        "empty_value": (b"", "decode"),
        "tombstone": (None, "decode"),
        "tombstone_without_key": (None, "decode"),
        "duplicate_memory_keys": (_encoded(duplicate_keys), "schema"),
        "entries_not_a_list": (_encoded(_event(906, entries=MARKER)), "schema"),
        "event_id_a_number": (_encoded(_event(907, event_id=907)), "schema"),
        "content_not_text": (_encoded(content_not_text), "schema"),
        "unknown_entry_type": (_encoded(unknown_entry), "schema"),
        "conversation_id_too_long": (_encoded(_event(908, conversation_id="c" * 600)), "schema"),
        "top_level_array": (b"[1, 2, 3]", "schema"),
        "cloudevent_data_not_json": (
            _encoded({"specversion": "1.0", "id": "x", "data": MARKER}),
            "schema",
        ),
    }


async def _produce_interleaved(
    bootstrap: str, topic: str, good: list[dict[str, Any]], hostile: dict[str, Any]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        cases = list(hostile.items())
        for index, event in enumerate(good):
            await producer.send_and_wait(
                topic, value=_encoded(event), key=event["conversation_id"].encode()
            )
            if index < len(cases):
                case, (value, _) = cases[index]
                # A batch of one: send_and_wait() refuses a record with neither key nor
                # value, which other clients do produce.
                batch = producer.create_batch()
                key = None if case in KEYLESS else case.encode()
                batch.append(
                    key=key, value=value, timestamp=None, headers=[("case", case.encode())]
                )
                batch.close()
                await (await producer.send_batch(batch, topic, partition=index % 3))
    finally:
        await producer.stop()


async def test_a_burst_of_hostile_records_is_parked_and_good_events_are_scored_between(
    make_worker: WorkerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    hostile = _hostile()
    good = [generated_event(950 + s, memories=2) for s in range(len(hostile))]
    await _produce_interleaved(kafka_bootstrap, topic_names.input, good, hostile)
    total = len(good) + len(hostile)
    # 16 of 32 to the DLQ: a window of 50 at 0.8 is never filled, let alone tripped.
    worker = make_worker(
        MEMSCORE_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES),
        MEMSCORE_DLQ_GUARD_WINDOW="50",
        MEMSCORE_DLQ_GUARD_RATIO="0.8",
    )
    worker.start()

    async def finished() -> bool:
        committed = await committed_offsets(kafka_bootstrap, group_id, topic_names.input)
        return sum(committed.values()) >= total

    await eventually(finished, within=90, what="every record finished", worker=worker)
    stored = await stored_runs(migrated)
    dead = await read_all(kafka_bootstrap, topic_names.dlq)
    assert worker.stop() == 0, tail(worker)

    parked = {dict(r.headers)["case"].decode(): r for r in dead}
    classes = {case: dict(r.headers)["memscore.error.class"].decode() for case, r in parked.items()}
    reasons = [dict(r.headers)["memscore.error.reason"].decode() for r in dead]
    print(f"\nRELIABILITY hostile_input {json.dumps({'inputs': len(hostile), 'good': len(good)})}")
    assert (stored, classes) == (len(good), {case: cls for case, (_, cls) in hostile.items()}), (
        tail(worker)
    )
    assert [r for r in reasons if len(r) > MAX_REASON_CHARS or MARKER in r] == []
    assert parked["tombstone"].value is None


async def test_the_dlq_guard_stops_the_worker_when_nearly_everything_is_poison(
    make_worker: WorkerFactory, kafka_bootstrap: str, topic_names: TopicNames
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for n in range(10):
            await producer.send_and_wait(topic_names.input, value=b"{not json", key=b"%d" % n)
    finally:
        await producer.stop()
    worker = make_worker(MEMSCORE_DLQ_GUARD_WINDOW="10", MEMSCORE_DLQ_GUARD_RATIO="0.8")
    worker.start()

    code = await exit_code(worker, within=60)
    reasons = [e.get("reason") for e in log_entries(worker) if e.get("level") == "critical"]
    assert (code, reasons) == (
        3,
        ["DLQ guard tripped: 10 of the last 10 events went to the DLQ"],
    ), tail(worker)


async def test_a_record_too_big_for_any_dlq_request_is_parked_without_its_value(
    make_worker: WorkerFactory,
    migrated: str,
    kafka_bootstrap: str,
    topic_names: TopicNames,
    group_id: str,
) -> None:
    huge = 2 * 1024 * 1024  # over the worker producer's request limit (1 MiB here)
    good = [generated_event(990 + s, memories=2) for s in range(3)]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, enable_idempotence=False, max_request_size=2 * huge
    )
    await producer.start()
    try:
        # One partition: the good events queue up behind the huge record.
        for value in [b"x" * huge, *(_encoded(e) for e in good)]:
            await producer.send_and_wait(topic_names.input, value=value, partition=0)
    finally:
        await producer.stop()
    worker = make_worker(MEMSCORE_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES))
    worker.start()

    async def finished() -> bool:
        committed = await committed_offsets(kafka_bootstrap, group_id, topic_names.input)
        return committed.get(0, 0) >= 1 + len(good)

    await eventually(finished, within=60, what="the partition past the huge record", worker=worker)
    dead = await read_all(kafka_bootstrap, topic_names.dlq)
    stored = await stored_runs(migrated)
    assert worker.stop() == 0, tail(worker)
    parked = [
        (r.value, dict(r.headers)["memscore.error.class"], dict(r.headers).get(VALUE_DROPPED))
        for r in dead
    ]
    assert (parked, stored) == ([(b"", b"too_large", str(huge).encode())], len(good))
