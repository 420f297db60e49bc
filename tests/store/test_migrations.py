"""The Alembic history against a real PostgreSQL: up, down, up again, and no drift."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from worker.store import async_database_url, find_alembic_config, head_revision, metadata
from worker.store.schema import downgrade_schema, upgrade_schema

REPO = Path(__file__).resolve().parents[2]
TABLES = {"memory_importance", "memory_scores", "response_scores", "scoring_runs"}


def _schema_state(conn: Connection) -> tuple[set[str], list[object]]:
    """(table names, differences between the database and the model's MetaData)."""
    diff = compare_metadata(MigrationContext.configure(conn), metadata)
    return set(inspect(conn).get_table_names()) - {"alembic_version"}, diff


async def _inspect(url: str) -> tuple[set[str], list[object]]:
    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_schema_state)
    finally:
        await engine.dispose()


async def test_upgrade_downgrade_upgrade_ends_with_the_model_schema(database_url: str) -> None:
    assert await asyncio.to_thread(upgrade_schema, database_url) == ["0001", "0002", "0003", "0004"]
    assert await asyncio.to_thread(downgrade_schema, database_url) == [
        "0004",
        "0003",
        "0002",
        "0001",
    ]
    tables_after_downgrade, _ = await _inspect(database_url)
    assert tables_after_downgrade == set()

    assert await asyncio.to_thread(upgrade_schema, database_url) == ["0001", "0002", "0003", "0004"]

    assert await _inspect(database_url) == (TABLES, [])


async def test_upgrading_a_database_at_head_applies_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade_schema, database_url)

    assert await asyncio.to_thread(upgrade_schema, database_url) == []


def test_the_history_starts_clean_with_one_head() -> None:
    assert head_revision() == "0004"


def test_the_repository_alembic_ini_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert find_alembic_config() == REPO / "alembic.ini"


def test_an_explicit_alembic_ini_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MEMSCORE_ALEMBIC_CONFIG"):
        find_alembic_config(tmp_path / "alembic.ini")


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.begin() as conn:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await conn.execute(text(statement))
                rows = [tuple(row) for row in result] if result.returns_rows else []
            return rows
    finally:
        await engine.dispose()


_RUN_AT_0002 = """
INSERT INTO scoring_runs (event_id, conversation_id, model, metric, noise_floor,
  scorer_version, memory_count, response_count, request_count, prompt_tokens,
  response_tokens, duration_seconds)
VALUES ('evt-old', 'conv', 'm', 'drop', 0, '1', 1, 1, 2, 10, 1, 0.1)
"""
_MEMORY_AT_0002 = """
INSERT INTO memory_scores (run_id, memory_index, entry_index, memory_key, importance, divergences)
SELECT id, 0, 0, 'k', 1.0, ARRAY[1.0]::float8[] FROM scoring_runs
"""


async def test_runs_stored_before_0003_read_as_exact_leave_one_out(database_url: str) -> None:
    await asyncio.to_thread(upgrade_schema, database_url, "0002")
    await _execute(database_url, _RUN_AT_0002, _MEMORY_AT_0002)

    await asyncio.to_thread(upgrade_schema, database_url)

    assert await _execute(
        database_url,
        "SELECT r.strategy, r.capped, m.row_kind FROM scoring_runs r "
        "JOIN memory_scores m ON m.run_id = r.id",
    ) == [("loo", False, "exact")]


async def test_0003_downgrades_with_estimated_runs_stored(database_url: str) -> None:
    await asyncio.to_thread(upgrade_schema, database_url)
    await _execute(
        database_url,
        _RUN_AT_0002,
        _MEMORY_AT_0002,
        "UPDATE scoring_runs SET strategy = 'surrogate', capped = true",
        "UPDATE memory_scores SET row_kind = 'estimated'",
    )

    assert await asyncio.to_thread(downgrade_schema, database_url, "0002") == ["0004", "0003"]
    assert await _execute(database_url, "SELECT memory_key FROM memory_scores") == [("k",)]


async def test_an_unknown_strategy_is_refused_by_the_schema(database_url: str) -> None:
    from sqlalchemy.exc import IntegrityError

    await asyncio.to_thread(upgrade_schema, database_url)
    with pytest.raises(IntegrityError, match="ck_scoring_runs_strategy"):
        await _execute(database_url, _RUN_AT_0002, "UPDATE scoring_runs SET strategy = 'auto'")


async def test_0004_downgrades_hybrid_runs_to_surrogate_keeping_exact_rows(
    database_url: str,
) -> None:
    await asyncio.to_thread(upgrade_schema, database_url)
    await _execute(
        database_url,
        _RUN_AT_0002,
        _MEMORY_AT_0002,
        "UPDATE scoring_runs SET strategy = 'hybrid'",
    )

    assert await asyncio.to_thread(downgrade_schema, database_url, "0003") == ["0004"]
    assert await _execute(
        database_url,
        "SELECT r.strategy, m.row_kind FROM scoring_runs r JOIN memory_scores m ON m.run_id = r.id",
    ) == [("surrogate", "exact")]
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError, match="ck_scoring_runs_strategy"):
        await _execute(database_url, "UPDATE scoring_runs SET strategy = 'hybrid'")


async def test_0004_fills_the_exact_totals_from_the_stored_rows(database_url: str) -> None:
    await asyncio.to_thread(upgrade_schema, database_url, "0003")
    memory_row = (
        "INSERT INTO memory_scores (run_id, memory_index, entry_index, memory_key, importance,"
        " divergences, row_kind) SELECT id, {index}, {index}, '{key}', {importance},"
        " ARRAY[{importance}]::float8[], '{kind}' FROM scoring_runs"
    )
    await _execute(
        database_url,
        _RUN_AT_0002,
        _MEMORY_AT_0002,  # 'k': 1.0, exact
        memory_row.format(index=1, key="e", importance=2.0, kind="estimated"),
        # 'r' twice in the run: one exact, one estimated row, so the run is not exact.
        memory_row.format(index=2, key="r", importance=0.5, kind="exact"),
        memory_row.format(index=3, key="r", importance=0.25, kind="estimated"),
        "INSERT INTO memory_importance VALUES ('k', 1.0, 1, 1.0, now()),"
        " ('e', 2.0, 1, 2.0, now()), ('r', 0.75, 1, 0.75, now())",
    )

    await asyncio.to_thread(upgrade_schema, database_url)

    assert await _execute(
        database_url,
        "SELECT memory_key, cumulative_importance, runs, exact_importance, exact_runs"
        " FROM memory_importance ORDER BY memory_key",
    ) == [("e", 2.0, 1, 0.0, 0), ("k", 1.0, 1, 1.0, 1), ("r", 0.75, 1, 0.0, 0)]
