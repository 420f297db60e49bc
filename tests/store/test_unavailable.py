"""Which failures are StoreUnavailable (retry later) and which are bugs (propagate)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.postgres import EmbeddedPostgres
from tests.store.results import make_result
from worker.errors import StoreUnavailable
from worker.observability.metrics import DEPENDENCY_UP, REGISTRY
from worker.store import SaveOutcome, ScoreStore, async_database_url

PASSWORD = "hunter2-Secret"


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://memscore:{PASSWORD}@127.0.0.1:{port}/memscore"


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_ping_against_a_closed_port_is_store_unavailable_without_the_password() -> None:
    DEPENDENCY_UP.labels("postgres").set(1)  # as the gate leaves it while saves succeed
    async with ScoreStore.connect(_closed_port_url(), connect_timeout=5) as store:
        with pytest.raises(StoreUnavailable) as caught:
            await store.ping()

    assert "ConnectionRefusedError" in caught.value.message
    assert PASSWORD not in caught.value.message
    # The consumer's gate owns memscore_dependency_up: a readiness ping never moves it.
    assert _sample("memscore_dependency_up", {"dependency": "postgres"}) == 1.0


async def test_save_against_a_closed_port_is_store_unavailable_and_counted_as_error() -> None:
    errors = "memscore_db_transaction_duration_seconds_count"
    before = _sample(errors, {"outcome": "error"})

    async with ScoreStore.connect(_closed_port_url(), connect_timeout=5) as store:
        with pytest.raises(StoreUnavailable):
            await store.save(make_result("evt-1"))

    assert _sample(errors, {"outcome": "error"}) == before + 1


async def test_a_database_that_does_not_exist_is_store_unavailable(database_url: str) -> None:
    missing = make_url(database_url).set(database="memscore_no_such_database")

    async with ScoreStore.connect(missing) as store:
        with pytest.raises(StoreUnavailable, match="does not exist"):
            await store.ping()


async def test_a_missing_table_is_a_bug_and_propagates_as_it_is(database_url: str) -> None:
    async with ScoreStore.connect(database_url) as store:  # never migrated
        with pytest.raises(sqlalchemy.exc.ProgrammingError, match="scoring_runs"):
            await store.save(make_result("evt-1"))


async def test_the_pool_recovers_after_the_server_drops_its_connections(
    store: ScoreStore, migrated_url: str
) -> None:
    await store.save(make_result("evt-1"))  # leaves a connection in the pool
    admin = create_async_engine(async_database_url(migrated_url))
    try:
        async with admin.connect() as conn:
            dropped = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'memscore' AND datname = current_database()"
                )
            )
    finally:
        await admin.dispose()

    assert dropped == 1
    assert await store.save(make_result("evt-2")) is SaveOutcome.STORED


async def test_a_database_restart_is_store_unavailable_until_it_is_back(
    store: ScoreStore, postgres_server: EmbeddedPostgres
) -> None:
    await store.save(make_result("evt-1"))
    await asyncio.to_thread(postgres_server.stop)
    try:
        with pytest.raises(StoreUnavailable):
            await store.save(make_result("evt-2"))
    finally:
        await asyncio.to_thread(postgres_server.start)

    assert await store.save(make_result("evt-2")) is SaveOutcome.STORED


def test_a_url_that_is_not_postgresql_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="PostgreSQL") as caught:
        ScoreStore.connect(f"mysql://memscore:{PASSWORD}@db/memscore")

    assert PASSWORD not in str(caught.value)


def test_an_unparseable_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="postgresql://") as caught:
        async_database_url(f"memscore:{PASSWORD}@db")

    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@db:5432/x", "postgresql+asyncpg://u@db:5432/x"),
        ("postgres://u@db/x", "postgresql+asyncpg://u@db/x"),
        ("postgresql+asyncpg://u@db/x", "postgresql+asyncpg://u@db/x"),
        ("postgresql://u@db/x?sslmode=require", "postgresql+asyncpg://u@db/x?ssl=require"),
    ],
)
def test_plain_postgresql_urls_get_the_asyncpg_driver(given: str, expected: str) -> None:
    assert async_database_url(given).render_as_string() == expected
