"""The connection to PostgreSQL: URL normalising, the async engine, and error translation.

Connection-level failures become ``StoreUnavailable`` (retry later, never DLQ);
anything else (bad SQL, an unexpected constraint violation) is a bug and
propagates untouched. Messages name the failure, never the URL or its password.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy.exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from worker.errors import StoreUnavailable

_DRIVER = "postgresql+asyncpg"
_ACCEPTED_DRIVERS = frozenset({"postgres", "postgresql", _DRIVER})

# SQLSTATE classes and codes where waiting and retrying can help.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset(
    {
        "08",  # connection exception
        "28",  # invalid authorization (credentials not yet rotated in, pg_hba)
        "3D",  # invalid catalog name: the database is not there (yet)
        "53",  # insufficient resources: too many connections, disk full
        "57",  # operator intervention: shutting down, starting up, statement timeout
        "58",  # system error: I/O error on the server
    }
)
_UNAVAILABLE_SQLSTATES = frozenset(
    {
        "25006",  # read-only transaction: a failover left us on a standby
        "40001",  # serialization failure
        "40P01",  # deadlock detected
        "55P03",  # lock not available
    }
)
_MAX_REASON_CHARS = 200


def async_database_url(url: str | URL) -> URL:
    """``url`` with the asyncpg driver; plain ``postgresql://`` and ``postgres://`` work too.

    Raises ValueError, without repeating the URL, when it cannot be a PostgreSQL URL.
    """
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (sqlalchemy.exc.ArgumentError, ValueError):
            # SQLAlchemy's message quotes the whole string, password included; a port
            # that is not a number fails in int(), whose message quotes what stood there.
            raise ValueError(
                "not a database URL of the form postgresql://user:password@host:port/database"
            ) from None
    if url.drivername not in _ACCEPTED_DRIVERS:
        raise ValueError(f"only PostgreSQL through asyncpg is supported, not {url.drivername!r}")
    url = url.set(drivername=_DRIVER)
    if "sslmode" in url.query:
        # libpq spells it sslmode, asyncpg ssl (same values: disable, require, verify-full...).
        url = url.difference_update_query(["sslmode"]).update_query_dict(
            {"ssl": url.query["sslmode"]}
        )
    return url


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 5,
    connect_timeout: float = 10.0,
    command_timeout: float = 60.0,
) -> AsyncEngine:
    """An engine whose pool recovers after a database restart (pre-ping on checkout)."""
    return create_async_engine(
        async_database_url(url),
        # pool_size is the cap: MEMSCORE_DATABASE_POOL_SIZE bounds each worker's connections.
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        # Waiting longer than this for a pooled connection means the database is too slow.
        pool_timeout=connect_timeout + command_timeout,
        connect_args={
            "timeout": connect_timeout,
            "command_timeout": command_timeout,
            "server_settings": {"application_name": "memscore"},
        },
    )


def store_unavailable(exc: BaseException, *, redact: Iterable[str] = ()) -> StoreUnavailable | None:
    """The StoreUnavailable that ``exc`` amounts to, or None when it is not connection-level.

    ``redact``: secrets (the password) to blank out of the message, should a driver
    ever quote them.
    """
    if isinstance(exc, StoreUnavailable):
        return exc
    if not _is_unavailable(exc):
        return None
    cause = _innermost(exc)
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    for secret in redact:
        if secret:
            reason = reason.replace(secret, "***")
    if len(reason) > _MAX_REASON_CHARS:
        reason = reason[: _MAX_REASON_CHARS - 3] + "..."
    name = type(cause).__name__
    return StoreUnavailable(
        f"PostgreSQL is unavailable: {name}: {reason}"
        if reason
        else f"PostgreSQL is unavailable: {name}"
    )


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return True  # no pooled connection came free in time
    if any(isinstance(link, OSError) for link in _chain(exc)):
        return True  # refused, unreachable, DNS failure, and asyncpg's timeouts
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return True
    sqlstate = _sqlstate(exc)
    return sqlstate is not None and (
        sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES or sqlstate in _UNAVAILABLE_SQLSTATES
    )


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, then what it wraps (DBAPI ``orig``, ``__cause__``), outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return seen


def _innermost(exc: BaseException) -> BaseException:
    return _chain(exc)[-1]


def _sqlstate(exc: BaseException) -> str | None:
    for link in _chain(exc):
        state = getattr(link, "sqlstate", None)
        if isinstance(state, str) and len(state) == 5:
            return state
    return None
