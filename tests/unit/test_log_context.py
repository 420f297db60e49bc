"""Fields bound to an event's processing appear on every log line written inside it."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from worker.log_context import bind, bound_fields
from worker.observability.logging import JsonFormatter


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_bound_fields_reach_every_line_and_the_call_s_extra_wins() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.bound")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with bind(partition=3, offset=41), bind(event_id="evt-1"):
            log.info("one")
            log.info("two", extra={"offset": 42})
        log.info("outside")
    finally:
        log.removeHandler(handler)
    one, two, outside = _lines(stream)
    assert (one["partition"], one["offset"], one["event_id"]) == (3, 41, "evt-1")
    assert two["offset"] == 42
    assert "event_id" not in outside
    assert bound_fields() == {}


async def test_each_task_sees_its_own_event() -> None:
    seen: dict[str, object] = {}

    async def process(event_id: str) -> None:
        with bind(event_id=event_id):
            await asyncio.sleep(0)
            seen[event_id] = bound_fields()["event_id"]

    await asyncio.gather(process("a"), process("b"))
    assert seen == {"a": "a", "b": "b"}
