"""Store fixtures: a migrated database (from the `database_url` fixture) and a store on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from worker.store import ScoreStore, upgrade_schema


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """`database_url` with the schema at head."""
    await asyncio.to_thread(upgrade_schema, database_url)
    return database_url


@pytest.fixture
async def store(migrated_url: str) -> AsyncIterator[ScoreStore]:
    async with ScoreStore.connect(migrated_url, pool_size=10) as store:
        yield store
