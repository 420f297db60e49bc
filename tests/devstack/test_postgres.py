"""The devstack PostgreSQL: fresh databases per test, outages that keep data, and its CLI."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.postgres import (
    EmbeddedPostgres,
    create_database,
    drop_database,
    libpq_uri,
    sqlalchemy_url,
    unique_database_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBLIC_TABLES = "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"


async def execute(url: str, *statements: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def fetch_column(url: str, query: str) -> list[object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(query))).scalars())
    finally:
        await engine.dispose()


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    # Not tmp_path: pytest makes it 0700, and PostgreSQL runs as its own user under root.
    path = Path(tempfile.mkdtemp(prefix="memscore-pg-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_a_test_database_starts_empty(database_url: str) -> None:
    assert await fetch_column(database_url, PUBLIC_TABLES) == []


async def test_a_table_in_one_database_is_absent_from_another(database_url: str) -> None:
    other = unique_database_name("other")
    other_url = await create_database(database_url, other)
    try:
        await execute(database_url, "CREATE TABLE events (id integer)")
        tables_elsewhere = await fetch_column(other_url, PUBLIC_TABLES)
    finally:
        await drop_database(database_url, other)
    assert tables_elsewhere == []


async def test_drop_database_ends_sessions_left_open(database_url: str) -> None:
    doomed = unique_database_name("doomed")
    engine = create_async_engine(await create_database(database_url, doomed))
    try:
        connection = await engine.connect()
        await connection.execute(text("SELECT 1"))  # a session a careless test left open
        await drop_database(database_url, doomed)
        await connection.invalidate()  # it was killed; don't try a rollback on close
    finally:
        await engine.dispose()
    names = await fetch_column(database_url, "SELECT datname FROM pg_database")
    assert doomed not in names


async def test_database_names_must_be_plain_identifiers(database_url: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        await create_database(database_url, 'x"; DROP DATABASE postgres; --')


async def test_stop_and_start_keep_the_data(
    postgres_server: EmbeddedPostgres, database_url: str
) -> None:
    await execute(database_url, "CREATE TABLE kept (x integer)", "INSERT INTO kept VALUES (42)")
    await asyncio.to_thread(postgres_server.stop)
    with pytest.raises(FileNotFoundError):  # its unix socket goes away with it
        await fetch_column(database_url, "SELECT 1")
    await asyncio.to_thread(postgres_server.start)
    assert await fetch_column(database_url, "SELECT x FROM kept") == [42]


async def test_the_session_server_trades_durability_for_speed(
    postgres_server: EmbeddedPostgres,
) -> None:
    # fsync on makes every DROP DATABASE (one per test) wait for a checkpoint's fsync.
    assert await fetch_column(postgres_server.sqlalchemy_url, "SHOW fsync") == ["off"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "postgresql://postgres:@/postgres?host=/tmp/pg",
            "postgresql+asyncpg://postgres@/scratch?host=%2Ftmp%2Fpg",
        ),
        (
            "postgresql://postgres@127.0.0.1:5432/test",
            "postgresql+asyncpg://postgres@127.0.0.1:5432/scratch",
        ),
        ("postgresql+asyncpg://u:p%40ss@db/app", "postgresql+asyncpg://u:p%40ss@db/scratch"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/scratch"),
    ],
)
def test_sqlalchemy_url_accepts_every_flavour(given: str, expected: str) -> None:
    assert sqlalchemy_url(given, "scratch") == expected


def test_libpq_uri_drops_the_driver() -> None:
    assert libpq_uri("postgresql+asyncpg://u@db/app") == "postgresql://u@db/app"


@pytest.mark.timeout(60)
def test_cli_serves_until_sigterm_then_stops_the_server(scratch_dir: Path) -> None:
    data_dir = scratch_dir / "pgdata"
    command = [sys.executable, "-m", "devstack", "postgres", "--dir", str(data_dir)]
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            url = ready.removeprefix("postgres ready sqlalchemy_url=").strip()
            answers = asyncio.run(fetch_column(url, "SELECT 1")) == [1]
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
        finally:
            process.kill()
    stopped = not EmbeddedPostgres(data_dir).is_running
    assert (ready.startswith("postgres ready "), answers, process.returncode, stopped) == (
        True,
        True,
        0,
        True,
    ), errors
