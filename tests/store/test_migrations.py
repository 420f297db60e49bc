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
    assert await asyncio.to_thread(upgrade_schema, database_url) == ["0001", "0002"]
    assert await asyncio.to_thread(downgrade_schema, database_url) == ["0002", "0001"]
    tables_after_downgrade, _ = await _inspect(database_url)
    assert tables_after_downgrade == set()

    assert await asyncio.to_thread(upgrade_schema, database_url) == ["0001", "0002"]

    assert await _inspect(database_url) == (TABLES, [])


async def test_upgrading_a_database_at_head_applies_nothing(database_url: str) -> None:
    await asyncio.to_thread(upgrade_schema, database_url)

    assert await asyncio.to_thread(upgrade_schema, database_url) == []


def test_the_history_starts_clean_with_one_head() -> None:
    assert head_revision() == "0002"


def test_the_repository_alembic_ini_is_found_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert find_alembic_config() == REPO / "alembic.ini"


def test_an_explicit_alembic_ini_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="MEMSCORE_ALEMBIC_CONFIG"):
        find_alembic_config(tmp_path / "alembic.ini")
