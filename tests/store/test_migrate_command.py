"""`memscore migrate` as a user runs it: a separate process, configured by environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from worker.store import async_database_url, head_revision

REPO = Path(__file__).resolve().parents[2]
TABLES = {
    "alembic_version",
    "memory_importance",
    "memory_scores",
    "response_scores",
    "scoring_runs",
}
PASSWORD = "hunter2-Secret"


@dataclass(frozen=True)
class Finished:
    status: int
    stdout: str
    stderr: str


async def _migrate(cwd: Path, **env: str) -> Finished:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMSCORE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "worker",
        "migrate",
        cwd=cwd,
        env={**clean, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return Finished(process.returncode, stdout.decode(), stderr.decode())


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(async_database_url(url))
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_migrate_creates_the_tables_and_says_so_in_one_line(
    database_url: str, tmp_path: Path
) -> None:
    done = await _migrate(tmp_path, MEMSCORE_DATABASE_URL=database_url)

    assert (done.status, done.stderr) == (0, "")
    assert len(done.stdout.splitlines()) == 1
    assert f"upgraded to {head_revision()}" in done.stdout
    assert await _tables(database_url) == TABLES


async def test_migrate_on_a_migrated_database_changes_nothing(
    database_url: str, tmp_path: Path
) -> None:
    await _migrate(tmp_path, MEMSCORE_DATABASE_URL=database_url)

    done = await _migrate(tmp_path, MEMSCORE_DATABASE_URL=database_url)

    assert done.status == 0
    assert "already at the newest revision" in done.stdout


async def test_replicas_migrating_at_once_apply_the_revision_once(
    database_url: str, tmp_path: Path
) -> None:
    runs = await asyncio.gather(
        *(_migrate(tmp_path, MEMSCORE_DATABASE_URL=database_url) for _ in range(3))
    )

    assert [r.status for r in runs] == [0, 0, 0]
    assert sum(f"upgraded to {head_revision()}" in r.stdout for r in runs) == 1


async def test_an_unreachable_database_exits_1_without_showing_the_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://memscore:{PASSWORD}@127.0.0.1:{_closed_port()}/memscore"

    done = await _migrate(tmp_path, MEMSCORE_DATABASE_URL=url)

    assert (done.status, done.stdout) == (1, "")
    assert len(done.stderr.splitlines()) == 1
    assert "PostgreSQL is unavailable" in done.stderr
    assert PASSWORD not in done.stderr


async def test_a_missing_database_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    done = await _migrate(tmp_path)

    assert done.status == 2
    assert "MEMSCORE_DATABASE_URL" in done.stderr


async def test_a_malformed_database_url_exits_2_without_echoing_it(tmp_path: Path) -> None:
    done = await _migrate(tmp_path, MEMSCORE_DATABASE_URL=f"memscore:{PASSWORD}@db")

    assert done.status == 2
    assert "MEMSCORE_DATABASE_URL" in done.stderr
    assert PASSWORD not in done.stderr


async def test_migrate_uses_the_alembic_ini_named_by_memscore_alembic_config(
    database_url: str, tmp_path: Path
) -> None:
    # The container layout: alembic.ini and migrations/ copied somewhere of their own.
    image = tmp_path / "app"
    shutil.copytree(REPO / "migrations", image / "migrations")
    shutil.copy(REPO / "alembic.ini", image / "alembic.ini")

    done = await _migrate(
        tmp_path,
        MEMSCORE_DATABASE_URL=database_url,
        MEMSCORE_ALEMBIC_CONFIG=str(image / "alembic.ini"),
    )

    assert done.status == 0
    assert await _tables(database_url) == TABLES


async def test_a_missing_alembic_config_exits_2(database_url: str, tmp_path: Path) -> None:
    done = await _migrate(
        tmp_path,
        MEMSCORE_DATABASE_URL=database_url,
        MEMSCORE_ALEMBIC_CONFIG=str(tmp_path / "nowhere.ini"),
    )

    assert done.status == 2
    assert "MEMSCORE_ALEMBIC_CONFIG" in done.stderr
