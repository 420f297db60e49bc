"""Alembic, driven from Python: where the migration scripts live, and applying them.

Where the scripts live: ``migrations/`` and ``alembic.ini`` sit at the top of the
repository (the layout the project fixed), next to the ``worker`` package, not
inside it, so the wheel does not carry them. find_alembic_config() therefore looks,
in order, at an explicit path (``memscore migrate`` passes MEMSCORE_ALEMBIC_CONFIG),
at ``alembic.ini`` beside the ``worker`` package's directory (a source tree or an
editable install), and at ``./alembic.ini`` (a container whose working directory
holds the copied ``alembic.ini`` and ``migrations/``: the Dockerfile must copy both).
``alembic.ini`` names its scripts as ``%(here)s/migrations``, so any working
directory works once the file is found.

These functions block (Alembic's env.py runs its own event loop): call them from
synchronous code, or through ``asyncio.to_thread`` from async code, one at a time
per process (Alembic keeps its migration context in a module global). Separate
processes may migrate at once: env.py serialises them with an advisory lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

import worker
from worker.store.engine import async_database_url, store_unavailable

ALEMBIC_CONFIG_ENV = "MEMSCORE_ALEMBIC_CONFIG"


def find_alembic_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The alembic.ini to use; FileNotFoundError naming the places looked at."""
    if explicit:
        path = Path(explicit)
        if path.is_file():
            return path
        raise FileNotFoundError(f"{ALEMBIC_CONFIG_ENV} names {path}, which is not a file")
    candidates = [
        Path(worker.__file__).resolve().parent.parent / "alembic.ini",
        Path("alembic.ini"),
    ]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    looked = ", ".join(str(path.absolute()) for path in candidates)
    raise FileNotFoundError(f"no alembic.ini at {looked}; set {ALEMBIC_CONFIG_ENV} to its path")


def alembic_config(url: str | URL, config_path: Path | None = None) -> Config:
    """Alembic's Config for ``url``, for calls to ``alembic.command``.

    ``attributes["applied"]`` collects the revisions env.py applies.
    """
    config = Config(str(config_path or find_alembic_config()))
    rendered = async_database_url(url).render_as_string(hide_password=False)
    # ConfigParser interpolates "%": a percent-encoded password would break without this.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    # Leave the caller's logging alone (the worker logs JSON through its own setup).
    config.attributes["configure_logger"] = False
    config.attributes["applied"] = []
    return config


def upgrade_schema(
    url: str | URL, revision: str = "head", *, config_path: Path | None = None
) -> list[str]:
    """Apply migrations up to ``revision``; the revisions applied, oldest first (may be none)."""
    config = alembic_config(url, config_path)
    _run(command.upgrade, config, revision)
    return list(config.attributes["applied"])


def downgrade_schema(
    url: str | URL, revision: str = "base", *, config_path: Path | None = None
) -> list[str]:
    """Undo migrations down to ``revision``; the revisions undone, newest first."""
    config = alembic_config(url, config_path)
    _run(command.downgrade, config, revision)
    return list(config.attributes["applied"])


def head_revision(config_path: Path | None = None) -> str:
    """The newest revision the migration scripts define."""
    script = ScriptDirectory.from_config(Config(str(config_path or find_alembic_config())))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("the migration scripts define no revision")
    return head


def _run(step: Callable[[Config, str], None], config: Config, revision: str) -> None:
    try:
        step(config, revision)
    except Exception as exc:
        password = _password(config)
        unavailable = store_unavailable(exc, redact=(password,) if password else ())
        if unavailable is None:
            raise
        raise unavailable from exc


def _password(config: Config) -> str | None:
    url = config.get_main_option("sqlalchemy.url")
    return async_database_url(url).password if url else None
