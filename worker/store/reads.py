"""Read-side queries: a memory's history, top memories, training candidates, one run."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.scoring.memory_score import MemoryScore
from worker.store.records import (
    EventSource,
    MemoryHistoryEntry,
    MemoryImportance,
    StoredRun,
    TrainingCandidate,
)
from worker.store.tables import memory_importance, memory_scores, response_scores, scoring_runs


async def memory_history(
    conn: AsyncConnection, memory_key: str, limit: int
) -> list[MemoryHistoryEntry]:
    """Every run that scored ``memory_key``, newest first (ix_memory_scores_memory_key_run_id)."""
    rows = await conn.execute(
        select(
            scoring_runs.c.event_id,
            scoring_runs.c.conversation_id,
            scoring_runs.c.created_at,
            memory_scores.c.memory_index,
            memory_scores.c.entry_index,
            memory_scores.c.importance,
            memory_scores.c.divergences,
        )
        .select_from(memory_scores.join(scoring_runs, scoring_runs.c.id == memory_scores.c.run_id))
        .where(memory_scores.c.memory_key == memory_key)
        .order_by(scoring_runs.c.created_at.desc(), scoring_runs.c.id.desc())
        .limit(limit)
    )
    return [
        MemoryHistoryEntry(
            event_id=row.event_id,
            conversation_id=row.conversation_id,
            scored_at=row.created_at,
            memory_index=row.memory_index,
            entry_index=row.entry_index,
            importance=row.importance,
            divergences=tuple(row.divergences),
        )
        for row in rows
    ]


async def memory_totals(conn: AsyncConnection, memory_key: str) -> MemoryImportance | None:
    """The running total of one memory, None when no run scored it."""
    row = (
        await conn.execute(
            select(memory_importance).where(memory_importance.c.memory_key == memory_key)
        )
    ).one_or_none()
    return None if row is None else MemoryImportance(**row._asdict())


async def top_memories(conn: AsyncConnection, limit: int) -> list[MemoryImportance]:
    """The memories with the highest cumulative importance (ix_..._cumulative_importance)."""
    rows = await conn.execute(
        select(memory_importance)
        .order_by(memory_importance.c.cumulative_importance.desc(), memory_importance.c.memory_key)
        .limit(limit)
    )
    return [MemoryImportance(**row._asdict()) for row in rows]


async def top_training_candidates(
    conn: AsyncConnection, since: datetime, until: datetime | None, limit: int
) -> list[TrainingCandidate]:
    """The responses that depended most on memory among the runs created in [since, until)."""
    window = scoring_runs.c.created_at >= since
    if until is not None:
        window &= scoring_runs.c.created_at < until
    rows = await conn.execute(
        select(
            scoring_runs.c.event_id,
            scoring_runs.c.conversation_id,
            scoring_runs.c.created_at,
            response_scores.c.response_index,
            response_scores.c.entry_index,
            response_scores.c.dependence,
            response_scores.c.token_count,
        )
        .select_from(
            scoring_runs.join(response_scores, response_scores.c.run_id == scoring_runs.c.id)
        )
        .where(window)
        .order_by(
            response_scores.c.dependence.desc(), scoring_runs.c.id, response_scores.c.response_index
        )
        .limit(limit)
    )
    return [
        TrainingCandidate(
            event_id=row.event_id,
            conversation_id=row.conversation_id,
            scored_at=row.created_at,
            response_index=row.response_index,
            entry_index=row.entry_index,
            dependence=row.dependence,
            token_count=row.token_count,
        )
        for row in rows
    ]


async def run_by_event_id(
    conn: AsyncConnection, event_id: str, event_source: str | None = None
) -> StoredRun | None:
    """One stored event with its MemoryScore rebuilt from the rows; None when not stored.

    Served by the unique (event_source, event_id) index.
    """
    run = (
        await conn.execute(
            select(scoring_runs).where(
                scoring_runs.c.event_source == (event_source or ""),
                scoring_runs.c.event_id == event_id,
            )
        )
    ).one_or_none()
    if run is None:
        return None
    memories = (
        await conn.execute(
            select(
                memory_scores.c.memory_key,
                memory_scores.c.entry_index,
                memory_scores.c.divergences,
                memory_scores.c.row_kind,
            )
            .where(memory_scores.c.run_id == run.id)
            .order_by(memory_scores.c.memory_index)
        )
    ).all()
    responses = (
        await conn.execute(
            select(response_scores.c.entry_index, response_scores.c.token_count)
            .where(response_scores.c.run_id == run.id)
            .order_by(response_scores.c.response_index)
        )
    ).all()
    matrix = np.array([row.divergences for row in memories], dtype=np.float64).reshape(
        len(memories), len(responses)
    )
    score = MemoryScore(
        memory_keys=tuple(row.memory_key for row in memories),
        memory_entry_indices=tuple(row.entry_index for row in memories),
        response_entry_indices=tuple(row.entry_index for row in responses),
        response_token_counts=tuple(row.token_count for row in responses),
        matrix=matrix,
        metric=run.metric,
        noise_floor=run.noise_floor,
        strategy=run.strategy,
        row_kinds=tuple(row.row_kind for row in memories),
        capped=run.capped,
    )
    source = (
        None
        if run.source_topic is None
        else EventSource(run.source_topic, run.source_partition, run.source_offset)
    )
    return StoredRun(
        id=run.id,
        event_id=run.event_id,
        event_source=run.event_source or None,
        conversation_id=run.conversation_id,
        model=run.model,
        scorer_version=run.scorer_version,
        requests=run.request_count,
        prompt_tokens=run.prompt_tokens,
        response_tokens=run.response_tokens,
        duration_seconds=run.duration_seconds,
        source=source,
        created_at=run.created_at,
        score=score,
    )
