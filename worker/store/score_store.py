"""ScoreStore: the PostgreSQL score store, one transaction per event."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worker.observability.metrics import DB_TRANSACTION_DURATION
from worker.scoring.memory_score import ConversationScore
from worker.settings import Settings
from worker.store import reads
from worker.store.engine import create_engine, store_unavailable
from worker.store.records import (
    EventSource,
    MemoryHistoryEntry,
    MemoryImportance,
    SaveOutcome,
    StoredRun,
    TrainingCandidate,
)
from worker.store.writes import insert_result

_OUTCOME_LABELS = {SaveOutcome.STORED: "committed", SaveOutcome.DUPLICATE: "duplicate"}


class ScoreWriter(Protocol):
    """What the consumer needs from a store: save results, say whether it is reachable."""

    async def save(
        self, result: ConversationScore, source: EventSource | None = None
    ) -> SaveOutcome: ...

    async def ping(self) -> None: ...

    async def run_by_event_id(
        self, event_id: str, event_source: str | None = None
    ) -> StoredRun | None: ...


class ScoreStore:
    """Scored runs in PostgreSQL. An async context manager owning its engine::

        async with ScoreStore.connect(url, pool_size=5) as store:
            outcome = await store.save(result, EventSource(topic, partition, offset))

    Every method raises ``StoreUnavailable`` when PostgreSQL cannot be reached
    (nothing was written; retrying later is safe, save() being idempotent) and lets
    any other error (a bug) through as it is.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._redact = tuple(p for p in (engine.url.password,) if isinstance(p, str) and p)

    @classmethod
    def connect(
        cls,
        url: str | URL,
        *,
        pool_size: int = 5,
        connect_timeout: float = 10.0,
        command_timeout: float = 60.0,
    ) -> ScoreStore:
        """A store for ``url`` (postgresql:// or postgresql+asyncpg://).

        Nothing is connected yet: connections open on first use, so a worker can
        start while the database is down and report it through ping().
        Raises ValueError (without repeating the URL) when ``url`` is not PostgreSQL's.
        """
        return cls(
            create_engine(
                url,
                pool_size=pool_size,
                connect_timeout=connect_timeout,
                command_timeout=command_timeout,
            )
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoreStore:
        """The store MEMSCORE_DATABASE_URL and MEMSCORE_DATABASE_POOL_SIZE describe."""
        return cls.connect(settings.require_database_url(), pool_size=settings.database_pool_size)

    async def __aenter__(self) -> ScoreStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._engine.dispose()

    async def save(
        self, result: ConversationScore, source: EventSource | None = None
    ) -> SaveOutcome:
        """Store one scored event in one transaction; a known event changes nothing."""
        started = time.perf_counter()
        try:
            async with self._translated(), self._engine.begin() as conn:
                outcome = await insert_result(conn, result, source)
        except BaseException:
            DB_TRANSACTION_DURATION.labels("error").observe(time.perf_counter() - started)
            raise
        DB_TRANSACTION_DURATION.labels(_OUTCOME_LABELS[outcome]).observe(
            time.perf_counter() - started
        )
        return outcome

    async def ping(self) -> None:
        """One round trip (SELECT 1), for /readyz; StoreUnavailable when it fails."""
        async with self._reading() as conn:
            await conn.execute(select(1))

    async def run_by_event_id(
        self, event_id: str, event_source: str | None = None
    ) -> StoredRun | None:
        """The stored run of one event (bare events have no source), None when not stored."""
        async with self._reading() as conn:
            return await reads.run_by_event_id(conn, event_id, event_source)

    async def memory_history(self, memory_key: str, limit: int = 100) -> list[MemoryHistoryEntry]:
        async with self._reading() as conn:
            return await reads.memory_history(conn, memory_key, limit)

    async def memory_importance(self, memory_key: str) -> MemoryImportance | None:
        async with self._reading() as conn:
            return await reads.memory_totals(conn, memory_key)

    async def top_memories(self, limit: int = 10) -> list[MemoryImportance]:
        async with self._reading() as conn:
            return await reads.top_memories(conn, limit)

    async def top_training_candidates(
        self, since: datetime, limit: int = 10, until: datetime | None = None
    ) -> list[TrainingCandidate]:
        async with self._reading() as conn:
            return await reads.top_training_candidates(conn, since, until, limit)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self._translated(), self._engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _translated(self) -> AsyncIterator[None]:
        """Connection-level errors become StoreUnavailable.

        memscore_dependency_up is the consumer's DependencyGate's to set: a readiness
        ping that succeeds while every save fails must not say PostgreSQL is up.
        """
        try:
            yield
        except Exception as exc:
            unavailable = store_unavailable(exc, redact=self._redact)
            if unavailable is None:
                raise
            raise unavailable from exc
