"""Alembic environment for memscore: async engine (asyncpg), the store's MetaData.

The database URL comes from, in order: ``alembic -x url=...``, the
``sqlalchemy.url`` option (set by worker.store.schema; alembic.ini leaves it
empty), then MEMSCORE_DATABASE_URL through the worker's settings.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from alembic.runtime.migration import MigrationInfo
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from worker.settings import load_settings
from worker.store.engine import async_database_url
from worker.store.tables import metadata

config = context.config
target_metadata = metadata

# Any constant works; every memscore migrate takes the same transaction-scoped lock.
_MIGRATION_LOCK_ID = 0x6D656D73636F7265  # "memscore"

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        url = load_settings().require_database_url()
    return async_database_url(url).render_as_string(hide_password=False)


def _record_applied(*, step: MigrationInfo, **_: object) -> None:
    """Tell the caller (worker.store.schema) which revisions ran."""
    applied = config.attributes.get("applied")
    if isinstance(applied, list):
        applied.append(step.up_revision_id)


def run_migrations_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        on_version_apply=_record_applied,
    )
    with context.begin_transaction():
        # Several replicas may run `memscore migrate` at once (one init container per
        # pod): the lock makes the others wait, then find the schema at head.
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
        context.run_migrations()


async def run_migrations_online() -> None:
    engine = create_async_engine(_database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
