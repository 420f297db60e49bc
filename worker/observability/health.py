"""Liveness and readiness as the main loop sees them.

Alive means "the loop made progress recently" (it ticks from inside the loop,
as arroyo's healthcheck does); ready means "partitions assigned or joining and
the database answers".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class HealthState:
    stale_after_seconds: float
    clock: Callable[[], float] = time.monotonic
    consumer_running: bool = False
    _last_tick: float | None = field(default=None, init=False)

    def tick(self) -> None:
        self._last_tick = self.clock()

    def alive(self) -> tuple[bool, str]:
        if self._last_tick is None:
            return True, "starting"
        age = self.clock() - self._last_tick
        if age > self.stale_after_seconds:
            return False, f"main loop stalled for {age:.0f} s"
        return True, "ok"


class Readiness:
    """Caches the database ping so probes do not hammer PostgreSQL."""

    def __init__(
        self,
        health: HealthState,
        ping: Callable[[], Awaitable[None]],
        cache_seconds: float = 5.0,
        ping_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self._ping = ping
        self._cache_seconds = cache_seconds
        self._ping_timeout = ping_timeout
        self._clock = clock
        self._checked_at: float | None = None
        self._db_ok = False

    async def ready(self) -> tuple[bool, str]:
        if not self.health.consumer_running:
            return False, "consumer not running"
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._cache_seconds:
            try:
                # A down database can hold a connect for its full timeout; probes can't wait.
                await asyncio.wait_for(self._ping(), timeout=self._ping_timeout)
                self._db_ok = True
            except Exception:  # any failure means "not ready"; the reason is logged elsewhere
                self._db_ok = False
            self._checked_at = now
        if not self._db_ok:
            return False, "database unreachable"
        return True, "ok"
