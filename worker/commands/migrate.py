"""`memscore migrate`: upgrade the database schema to the newest Alembic revision.

The migration scripts are not inside the installed package: they sit in the
top-level ``migrations/`` beside ``alembic.ini``. See worker.store.schema for how
they are found (MEMSCORE_ALEMBIC_CONFIG overrides the search).

Exit status: 0 done (or already at head), 1 the database cannot be reached,
2 a configuration problem (MEMSCORE_DATABASE_URL unset or malformed, no alembic.ini).
Messages never show the database password.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy.engine import URL

from worker.errors import FatalError, StoreUnavailable
from worker.settings import load_settings
from worker.store.engine import async_database_url
from worker.store.schema import ALEMBIC_CONFIG_ENV, find_alembic_config, upgrade_schema

_PREFIX = "memscore migrate:"


def migrate_command() -> int:
    try:
        url = async_database_url(load_settings().require_database_url())
    except FatalError as exc:
        return _fail(exc.message, status=2)
    except ValueError as exc:
        return _fail(f"MEMSCORE_DATABASE_URL: {exc}", status=2)
    try:
        config_path = find_alembic_config(os.environ.get(ALEMBIC_CONFIG_ENV))
    except FileNotFoundError as exc:
        return _fail(str(exc), status=2)
    try:
        applied = upgrade_schema(url, config_path=config_path)
    except StoreUnavailable as exc:
        return _fail(f"{exc.message} ({_where(url)})", status=1)
    if applied:
        print(f"{_PREFIX} {_where(url)} upgraded to {applied[-1]} (applied {', '.join(applied)})")
    else:
        print(f"{_PREFIX} {_where(url)} is already at the newest revision")
    return 0


def _where(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _fail(message: str, *, status: int) -> int:
    print(f"{_PREFIX} {message}", file=sys.stderr)
    return status
