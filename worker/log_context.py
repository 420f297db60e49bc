"""Fields bound to every log line of one piece of work (an event's id, partition, offset).

Set once where the work starts; the log formatter reads them, so call sites do not
repeat them. A context variable, so each asyncio task sees its own event's fields
(a task copies the context it was created in).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_bound: ContextVar[dict[str, Any] | None] = ContextVar("memscore_log_fields", default=None)


def bound_fields() -> dict[str, Any]:
    """The fields bound in the current context (a copy; empty when none)."""
    fields = _bound.get()
    return dict(fields) if fields else {}


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log line written inside the block (identifiers only)."""
    token = _bound.set({**(_bound.get() or {}), **fields})
    try:
        yield
    finally:
        _bound.reset(token)
