"""ScoreStore against a real PostgreSQL: rows, idempotency, running totals, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from tests.store.results import make_result
from worker.observability.metrics import REGISTRY
from worker.scoring.memory_score import RowKind
from worker.store import EventSource, MemoryImportance, SaveOutcome, ScoreStore, async_database_url
from worker.store.tables import memory_importance, memory_scores, response_scores, scoring_runs

SOURCE = EventSource(topic="conversation-closed", partition=3, offset=41)


async def _rows(url: str, query: Select[Any]) -> list[tuple[object, ...]]:
    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in await conn.execute(query)]
    finally:
        await engine.dispose()


async def _table_counts(url: str) -> dict[str, int]:
    tables = (scoring_runs, memory_scores, response_scores, memory_importance)
    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.connect() as conn:
            return {
                t.name: (await conn.execute(select(func.count()).select_from(t))).scalar_one()
                for t in tables
            }
    finally:
        await engine.dispose()


async def test_a_saved_event_becomes_one_run_with_its_memory_and_response_rows(
    store: ScoreStore, migrated_url: str
) -> None:
    result = make_result("evt-1", ["m-a", "m-b"], [[1.0, 0.5, 0.0], [0.25, 0.0, 2.0]])

    assert await store.save(result, SOURCE) is SaveOutcome.STORED

    runs = await _rows(
        migrated_url,
        select(
            scoring_runs.c.event_id,
            scoring_runs.c.conversation_id,
            scoring_runs.c.memory_count,
            scoring_runs.c.response_count,
            scoring_runs.c.request_count,
            scoring_runs.c.prompt_tokens,
            scoring_runs.c.response_tokens,
            scoring_runs.c.source_topic,
            scoring_runs.c.source_partition,
            scoring_runs.c.source_offset,
        ),
    )
    assert runs == [("evt-1", "conv-1", 2, 3, 3, 1234, 33, "conversation-closed", 3, 41)]
    memories = await _rows(
        migrated_url,
        select(
            memory_scores.c.memory_index,
            memory_scores.c.entry_index,
            memory_scores.c.memory_key,
            memory_scores.c.importance,
            memory_scores.c.divergences,
        ).order_by(memory_scores.c.memory_index),
    )
    assert memories == [(0, 0, "m-a", 1.5, [1.0, 0.5, 0.0]), (1, 1, "m-b", 2.25, [0.25, 0.0, 2.0])]
    responses = await _rows(
        migrated_url,
        select(
            response_scores.c.response_index,
            response_scores.c.entry_index,
            response_scores.c.dependence,
            response_scores.c.token_count,
        ).order_by(response_scores.c.response_index),
    )
    assert responses == [(0, 100, 1.25, 10), (1, 101, 0.5, 11), (2, 102, 2.0, 12)]


async def test_the_matrix_round_trips_bit_for_bit(store: ScoreStore) -> None:
    rng = random.Random(7)
    matrix = [[rng.uniform(-1e-3, 50.0) for _ in range(4)] for _ in range(16)]
    matrix[0][0], matrix[1][1], matrix[2][2] = 5e-324, 1.7976931348623157e308, -0.0
    result = make_result("evt-bits", [f"m-{i:02d}" for i in range(16)], matrix)

    await store.save(result, None)
    stored = await store.run_by_event_id("evt-bits")

    assert stored is not None
    assert stored.score.matrix.tolist() == matrix
    assert math.copysign(1.0, stored.score.matrix[2, 2]) == -1.0


async def test_run_by_event_id_gives_back_what_was_saved(store: ScoreStore) -> None:
    result = make_result("evt-2", ["m-a", "m-b", "m-c"], responses=2)

    await store.save(result, SOURCE)
    stored = await store.run_by_event_id("evt-2")

    assert stored is not None
    assert (
        stored.event_id,
        stored.conversation_id,
        stored.model,
        stored.scorer_version,
        stored.requests,
        stored.prompt_tokens,
        stored.response_tokens,
        stored.duration_seconds,
        stored.source,
    ) == ("evt-2", "conv-1", "smollm2-135m", "1", 4, 1234, 21, 1.5, SOURCE)
    assert stored.score.to_dict() == result.score.to_dict()


async def test_an_offline_run_has_no_source(store: ScoreStore) -> None:
    await store.save(make_result("evt-offline"), None)

    stored = await store.run_by_event_id("evt-offline")

    assert stored is not None
    assert stored.source is None


async def test_an_unknown_event_id_has_no_run(store: ScoreStore) -> None:
    assert await store.run_by_event_id("never-saved") is None


async def test_a_redelivered_event_changes_nothing(store: ScoreStore, migrated_url: str) -> None:
    await store.save(make_result("evt-1", ["m-a", "m-b"]), SOURCE)
    counts = await _table_counts(migrated_url)
    totals = await store.top_memories(10)

    redelivered = make_result("evt-1", ["m-a", "m-b"], [[9.0, 9.0], [9.0, 9.0]])
    outcome = await store.save(redelivered, EventSource("conversation-closed", 3, 99))

    assert outcome is SaveOutcome.DUPLICATE
    assert (await _table_counts(migrated_url), await store.top_memories(10)) == (counts, totals)


async def test_two_events_add_up_in_the_running_totals(store: ScoreStore) -> None:
    await store.save(make_result("evt-1", ["m-a", "m-b"], [[1.0, 0.5], [0.25, 0.0]]), None)
    await store.save(make_result("evt-2", ["m-b", "m-a"], [[2.0, 0.0], [0.0, 0.75]]), None)

    a = await store.memory_importance("m-a")
    b = await store.memory_importance("m-b")

    assert a is not None
    assert b is not None
    assert (a.cumulative_importance, a.runs, a.last_importance) == (2.25, 2, 0.75)
    assert (b.cumulative_importance, b.runs, b.last_importance) == (2.25, 2, 2.0)


async def test_a_key_repeated_in_one_event_counts_once_with_its_summed_importance(
    store: ScoreStore,
) -> None:
    await store.save(make_result("evt-1", ["m-a", "m-a"], [[1.0, 0.5], [0.25, 0.0]]), None)

    totals = await store.memory_importance("m-a")

    assert totals is not None
    assert (totals.cumulative_importance, totals.runs, totals.last_importance) == (1.75, 1, 1.75)


async def test_exact_totals_count_only_rows_measured_alone_and_unscored_rows_count_nowhere(
    store: ScoreStore,
) -> None:
    keys = ["m-exact", "m-estimated", "m-skipped", "m-unscored"]
    matrix = [[1.0, 0.5], [0.25, 0.25], [0.0, 0.0], [0.0, 0.0]]
    kinds: list[RowKind] = ["exact", "estimated", "skipped", "unscored"]
    await store.save(make_result("evt-1", keys, matrix, row_kinds=kinds, strategy="hybrid"), None)
    await store.save(make_result("evt-2", keys, matrix), None)  # every row exact

    totals = {key: await store.memory_importance(key) for key in keys}

    assert {
        key: (t.cumulative_importance, t.runs, t.exact_importance, t.exact_runs)
        for key, t in totals.items()
        if t is not None
    } == {
        "m-exact": (3.0, 2, 3.0, 2),
        "m-estimated": (1.0, 2, 0.5, 1),
        "m-skipped": (0.0, 2, 0.0, 2),
        "m-unscored": (0.0, 1, 0.0, 1),  # only evt-2 measured it
    }


async def test_a_run_whose_every_row_is_unscored_adds_no_totals(store: ScoreStore) -> None:
    kinds: list[RowKind] = ["unscored", "unscored"]
    await store.save(make_result("evt-1", row_kinds=kinds), None)

    assert await store.top_memories(10) == []


async def test_concurrent_events_sharing_keys_neither_deadlock_nor_lose_updates(
    store: ScoreStore,
) -> None:
    keys = [f"m-{i:02d}" for i in range(16)]
    rng = random.Random(11)
    results = []
    for n in range(10):
        order = rng.sample(keys, len(keys))  # a different lock order in every event
        matrix = [[0.25 * (n + 1), 0.5] for _ in order]
        results.append(make_result(f"evt-{n}", order, matrix))

    outcomes = await asyncio.wait_for(asyncio.gather(*(store.save(r) for r in results)), 60)

    assert outcomes == [SaveOutcome.STORED] * 10
    expected = sum(0.25 * (n + 1) + 0.5 for n in range(10))
    top = await store.top_memories(100)
    assert {(m.memory_key, m.cumulative_importance, m.runs) for m in top} == {
        (key, expected, 10) for key in keys
    }


async def test_concurrent_deliveries_of_one_event_store_it_once(store: ScoreStore) -> None:
    result = make_result("evt-same", ["m-a", "m-b"])

    outcomes = await asyncio.gather(*(store.save(result, SOURCE) for _ in range(6)))

    assert sorted(o.value for o in outcomes) == ["duplicate"] * 5 + ["stored"]
    totals = await store.memory_importance("m-a")
    assert totals is not None
    assert totals.runs == 1


async def test_an_event_without_memories_or_responses_is_still_recorded(store: ScoreStore) -> None:
    assert (
        await store.save(make_result("evt-empty", [], [], responses=3), None) is SaveOutcome.STORED
    )
    assert (
        await store.save(make_result("evt-none", ["m-a"], responses=0), None) is SaveOutcome.STORED
    )

    empty = await store.run_by_event_id("evt-empty")
    none = await store.run_by_event_id("evt-none")

    assert empty is not None
    assert none is not None
    assert (empty.score.matrix.shape, none.score.matrix.shape) == ((0, 3), (1, 0))
    assert await store.top_memories() == [
        MemoryImportance("m-a", 0.0, 1, 0.0, none.created_at, exact_importance=0.0, exact_runs=1),
    ]


async def test_top_memories_are_ordered_by_cumulative_importance(store: ScoreStore) -> None:
    await store.save(make_result("evt-1", ["m-low", "m-high", "m-mid"], [[0.25], [3.0], [1.0]]))

    top = await store.top_memories(limit=2)

    assert [(m.memory_key, m.cumulative_importance) for m in top] == [
        ("m-high", 3.0),
        ("m-mid", 1.0),
    ]


async def test_memory_history_lists_runs_newest_first(store: ScoreStore) -> None:
    await store.save(make_result("evt-1", ["m-a", "m-b"], [[1.0], [2.0]], conversation_id="c1"))
    await store.save(make_result("evt-2", ["m-c", "m-a"], [[4.0], [0.5]], conversation_id="c2"))

    history = await store.memory_history("m-a")

    assert [(h.event_id, h.conversation_id, h.memory_index, h.importance) for h in history] == [
        ("evt-2", "c2", 1, 0.5),
        ("evt-1", "c1", 0, 1.0),
    ]
    assert history[0].divergences == (0.5,)


async def test_training_candidates_are_the_most_dependent_responses_of_the_window(
    store: ScoreStore,
) -> None:
    await store.save(make_result("evt-1", ["m-a"], [[0.5, 3.0, 1.0]]))
    await store.save(make_result("evt-2", ["m-a"], [[2.0, 0.0]]))
    now = datetime.now(UTC)

    top = await store.top_training_candidates(since=now - timedelta(hours=1), limit=2)
    later = await store.top_training_candidates(since=now + timedelta(hours=1))

    assert [(c.event_id, c.response_index, c.entry_index, c.dependence) for c in top] == [
        ("evt-1", 1, 101, 3.0),
        ("evt-2", 0, 100, 2.0),
    ]
    assert later == []


async def test_save_observes_the_transaction_duration_by_outcome(store: ScoreStore) -> None:
    def count(outcome: str) -> float:
        value = REGISTRY.get_sample_value(
            "memscore_db_transaction_duration_seconds_count", {"outcome": outcome}
        )
        return value or 0.0

    before = (count("committed"), count("duplicate"))
    await store.save(make_result("evt-1"))
    await store.save(make_result("evt-1"))

    assert (count("committed"), count("duplicate")) == (before[0] + 1, before[1] + 1)


async def test_the_same_id_from_two_sources_is_two_runs(store: ScoreStore) -> None:
    # CloudEvents ids are unique only within their source (issue #11, item 7).
    bare = make_result("42", conversation_id="c-bare")
    a = dataclasses.replace(make_result("42", conversation_id="c-a"), event_source="agent-a")
    b = dataclasses.replace(make_result("42", conversation_id="c-b"), event_source="agent-b")

    outcomes = [await store.save(r, SOURCE) for r in (bare, a, b, a)]

    assert outcomes == [SaveOutcome.STORED] * 3 + [SaveOutcome.DUPLICATE]
    found = [await store.run_by_event_id("42", s) for s in (None, "agent-a", "agent-b")]
    assert [(r.event_source, r.conversation_id) for r in found if r is not None] == [
        (None, "c-bare"),
        ("agent-a", "c-a"),
        ("agent-b", "c-b"),
    ]
    assert await store.run_by_event_id("42", "agent-c") is None


async def test_a_stored_run_reads_back_as_the_result_that_was_saved(store: ScoreStore) -> None:
    # A redelivered event publishes what the store holds (issue #11, item 6).
    result = dataclasses.replace(make_result("evt-again"), event_source="agent-a")
    await store.save(result, SOURCE)

    stored = await store.run_by_event_id("evt-again", "agent-a")

    assert stored is not None
    again = stored.as_result()
    assert again.score.matrix.tolist() == result.score.matrix.tolist()
    assert (again.event_id, again.event_source, again.conversation_id) == (
        "evt-again",
        "agent-a",
        "conv-1",
    )
    assert (again.requests, again.prompt_tokens, again.model) == (
        result.requests,
        result.prompt_tokens,
        result.model,
    )


async def test_an_estimated_run_reads_back_with_its_strategy_and_row_kinds(
    store: ScoreStore,
) -> None:
    result = make_result("evt-estimated", ["m-a", "m-b", "m-c"])
    score = dataclasses.replace(
        result.score,
        strategy="hierarchical",
        row_kinds=("exact", "pruned", "skipped"),
        capped=True,
    )
    await store.save(dataclasses.replace(result, score=score), SOURCE)

    stored = await store.run_by_event_id("evt-estimated")

    assert stored is not None
    assert (stored.score.strategy, stored.score.row_kinds, stored.score.capped) == (
        "hierarchical",
        ("exact", "pruned", "skipped"),
        True,
    )
