"""A circuit breaker per endpoint: stop sending to a server that keeps failing.

closed --(threshold consecutive failures)--> open --(reset_seconds)--> half-open
half-open lets one trial call through: success closes, failure opens again.
Pure logic; the caller hands in the time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BreakerState(enum.IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass
class CircuitBreaker:
    failure_threshold: int
    reset_seconds: float
    _failures: int = 0
    _opened_at: float | None = None
    _trial_in_flight: bool = False

    def state(self, now: float) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if now - self._opened_at >= self.reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allows(self, now: float) -> bool:
        """May a call start now? (Does not reserve the half-open trial.)"""
        state = self.state(now)
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self._trial_in_flight
        )

    def on_start(self, now: float) -> None:
        if self.state(now) is BreakerState.HALF_OPEN:
            self._trial_in_flight = True

    def on_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False

    def on_abandon(self) -> None:
        """A call ended without a verdict on the server (cancelled): free the trial."""
        self._trial_in_flight = False

    def on_failure(self, now: float) -> None:
        self._trial_in_flight = False
        self._failures += 1
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = now

    def seconds_until_trial(self, now: float) -> float:
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.reset_seconds - (now - self._opened_at))
