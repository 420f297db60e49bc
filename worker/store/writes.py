"""The statements of the one write transaction per event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from worker.scoring.memory_score import MEASURED_ALONE, ConversationScore, MemoryScore
from worker.store.records import EventSource, SaveOutcome
from worker.store.tables import memory_importance, memory_scores, response_scores, scoring_runs


async def insert_result(
    conn: AsyncConnection, result: ConversationScore, source: EventSource | None
) -> SaveOutcome:
    """Store ``result`` in the caller's transaction; a known (source, event id) changes nothing.

    The run row goes first, with ON CONFLICT DO NOTHING: a redelivered event finds
    its event_id taken and returns before any other row (the running totals
    included) is touched. A concurrent transaction holding the same event_id makes
    this insert wait for its outcome, so a redelivery racing the original cannot
    count twice either.
    """
    score = result.score
    run = (
        await conn.execute(
            insert(scoring_runs)
            .values(
                event_source=result.event_source or "",
                event_id=result.event_id,
                conversation_id=result.conversation_id,
                model=result.model,
                metric=score.metric,
                noise_floor=score.noise_floor,
                scorer_version=result.scorer_version,
                memory_count=len(score.memory_keys),
                response_count=len(score.response_entry_indices),
                request_count=result.requests,
                prompt_tokens=result.prompt_tokens,
                response_tokens=result.response_tokens,
                duration_seconds=result.duration_seconds,
                strategy=score.strategy,
                capped=score.capped,
                source_topic=source.topic if source else None,
                source_partition=source.partition if source else None,
                source_offset=source.offset if source else None,
            )
            .on_conflict_do_nothing(
                index_elements=[scoring_runs.c.event_source, scoring_runs.c.event_id]
            )
            .returning(scoring_runs.c.id, scoring_runs.c.created_at)
        )
    ).one_or_none()
    if run is None:
        return SaveOutcome.DUPLICATE
    run_id, created_at = run

    importances = [weight for _, weight in score.memory_weights]
    if score.memory_keys:
        await conn.execute(
            memory_scores.insert(),
            [
                {
                    "run_id": run_id,
                    "memory_index": index,
                    "entry_index": entry_index,
                    "memory_key": key,
                    "importance": importance,
                    "divergences": row,
                    "row_kind": kind,
                }
                for index, (key, entry_index, importance, row, kind) in enumerate(
                    zip(
                        score.memory_keys,
                        score.memory_entry_indices,
                        importances,
                        score.matrix.tolist(),
                        score.row_kinds,
                        strict=True,
                    )
                )
            ],
        )
    if score.response_entry_indices:
        await conn.execute(
            response_scores.insert(),
            [
                {
                    "run_id": run_id,
                    "response_index": index,
                    "entry_index": entry_index,
                    "dependence": dependence,
                    "token_count": token_count,
                }
                for index, (entry_index, dependence, token_count) in enumerate(
                    zip(
                        score.response_entry_indices,
                        score.response_scores,
                        score.response_token_counts,
                        strict=True,
                    )
                )
            ],
        )
    await _add_to_running_totals(conn, totals_by_key(score), created_at)
    return SaveOutcome.STORED


@dataclass(frozen=True)
class KeyTotal:
    key: str
    importance: float
    #: Every row of the key in this run was measured alone.
    exact: bool


def totals_by_key(score: MemoryScore) -> list[KeyTotal]:
    """One total per memory key of the run, sorted by key; ``unscored`` rows left out.

    Summed: ON CONFLICT DO UPDATE cannot touch one row twice in a statement (the
    decoder rejects repeated keys already; this keeps the store correct without it).
    Sorted: every transaction then locks memory_importance rows in the same order,
    so two events sharing keys wait for each other instead of deadlocking.
    Unscored: the token cap left the row without a measurement; its 0 is not one, so
    it adds neither importance nor a run.
    """
    totals: dict[str, float] = {}
    exact: dict[str, bool] = {}
    for (key, weight), kind in zip(score.memory_weights, score.row_kinds, strict=True):
        if kind == "unscored":
            continue
        totals[key] = totals.get(key, 0.0) + weight
        # Rows measured alone go into the exact running totals too.
        exact[key] = exact.get(key, True) and kind in MEASURED_ALONE
    return [KeyTotal(key, totals[key], exact[key]) for key in sorted(totals)]


async def _add_to_running_totals(
    conn: AsyncConnection, totals: list[KeyTotal], scored_at: datetime
) -> None:
    if not totals:
        return
    stmt = insert(memory_importance)
    current, new = memory_importance.c, stmt.excluded
    # Under READ COMMITTED the update applies to the latest committed row version,
    # so concurrent increments add up instead of overwriting each other. "last" is
    # the run with the latest created_at, whichever transaction commits last.
    newer = new.last_scored_at >= current.last_scored_at
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[current.memory_key],
            set_={
                "cumulative_importance": current.cumulative_importance + new.cumulative_importance,
                "runs": current.runs + new.runs,
                "last_importance": case(
                    (newer, new.last_importance), else_=current.last_importance
                ),
                "last_scored_at": func.greatest(current.last_scored_at, new.last_scored_at),
                "exact_importance": current.exact_importance + new.exact_importance,
                "exact_runs": current.exact_runs + new.exact_runs,
            },
        ),
        # executemany runs the rows in list order, so the row locks are taken in key order.
        [
            {
                "memory_key": total.key,
                "cumulative_importance": total.importance,
                "runs": 1,
                "last_importance": total.importance,
                "last_scored_at": scored_at,
                "exact_importance": total.importance if total.exact else 0.0,
                "exact_runs": int(total.exact),
            }
            for total in totals
        ],
    )
