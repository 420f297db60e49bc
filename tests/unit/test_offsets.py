"""Contiguous-completion commits, the DLQ guard and the records memscore writes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.consumer.guard import DlqGuard
from worker.consumer.messages import MAX_REASON_CHARS, dlq_headers, result_event, result_event_id
from worker.consumer.offsets import OffsetTracker
from worker.errors import EventValidationError
from worker.scoring import ConversationScore, MemoryScore


def test_commit_stops_at_the_first_unfinished_offset() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.start("p0", offset) for offset in (10, 11, 12, 13)]
    tracker.finish(tickets[1])
    tracker.finish(tickets[3])
    assert tracker.committable("p0") == 10
    tracker.finish(tickets[0])
    assert tracker.committable("p0") == 12
    tracker.finish(tickets[2])
    assert tracker.committable("p0") == 14


def test_nothing_started_means_nothing_to_commit() -> None:
    assert OffsetTracker().committable("p0") is None


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    slow = tracker.start("p0", 0)
    tracker.finish(tracker.start("p1", 5))
    assert (tracker.committable("p0"), tracker.committable("p1")) == (0, 6)
    tracker.finish(slow)
    assert tracker.committable("p0") == 1


def test_a_ticket_from_before_a_revoke_does_not_count() -> None:
    tracker = OffsetTracker()
    old = tracker.start("p0", 3)
    tracker.forget("p0")
    new = tracker.start("p0", 3)
    tracker.finish(old)
    assert tracker.committable("p0") == 3
    tracker.finish(new)
    assert tracker.committable("p0") == 4


def test_offsets_going_backwards_start_a_new_log() -> None:
    # A broker that lost its log (the devstack broker restarted) starts again at 0.
    tracker = OffsetTracker()
    stale = tracker.start("p0", 50)
    fresh = tracker.start("p0", 0)
    tracker.finish(stale)
    assert tracker.committable("p0") == 0
    tracker.finish(fresh)
    assert tracker.committable("p0") == 1


@settings(max_examples=200, deadline=None)
@given(st.permutations(list(range(20))), st.integers(0, 20))
def test_committed_offset_never_passes_an_unfinished_one(order: list[int], finished: int) -> None:
    tracker = OffsetTracker()
    tickets = [tracker.start("p", offset) for offset in range(20)]
    done = set(order[:finished])
    for offset in order[:finished]:
        tracker.finish(tickets[offset])
    expected = min(set(range(20)) - done, default=20)
    assert tracker.committable("p") == expected


@pytest.mark.parametrize(
    ("outcomes", "tripped"),
    [
        ([True] * 3, False),  # window not full yet
        ([True] * 4, True),
        ([True, True, True, False], True),  # 3/4 >= 0.75
        ([True, False, True, False], False),
        ([False] * 10 + [True] * 2, False),  # only the last 4 count
        ([False] * 10 + [True] * 3, True),
    ],
)
def test_dlq_guard(outcomes: list[bool], tripped: bool) -> None:
    guard = DlqGuard(window=4, max_ratio=0.75)
    for outcome in outcomes:
        guard.record(outcome)
    assert guard.tripped is tripped


def test_dlq_headers_keep_the_originals_and_bound_the_reason() -> None:
    error = EventValidationError("x" * 5000)
    headers = dict(
        dlq_headers(
            [("trace", b"t1"), ("memscore.error.class", b"forged")],
            error,
            topic="in",
            partition=2,
            offset=41,
            now=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )
    assert headers["trace"] == b"t1"
    assert headers["memscore.error.class"] == b"schema"
    assert len(headers["memscore.error.reason"]) == MAX_REASON_CHARS
    assert (headers["memscore.source.partition"], headers["memscore.source.offset"]) == (
        b"2",
        b"41",
    )
    assert headers["memscore.failed_at"] == b"2026-01-01T00:00:00.000+00:00"


def test_result_event_has_a_deterministic_id_and_the_scores() -> None:
    score = MemoryScore(
        memory_keys=("a", "b"),
        memory_entry_indices=(0, 1),
        response_entry_indices=(3,),
        response_token_counts=(5,),
        matrix=np.array([[1.5], [0.0]]),
    )
    result = ConversationScore("ev-1", "conv-1", "m", score, 3, 300, 5, 0.5, "1")
    body = json.loads(result_event(result))
    assert body["event_id"] == result_event_id("ev-1") == result_event_id("ev-1")
    assert body["event_id"] != result_event_id("ev-2")
    assert body["memories"] == [
        {"key": "a", "entry_index": 0, "importance": 1.5, "kind": "exact", "exact": True},
        {"key": "b", "entry_index": 1, "importance": 0.0, "kind": "exact", "exact": True},
    ]
    assert body["responses"] == [{"entry_index": 3, "dependence": 1.5, "tokens": 5}]
