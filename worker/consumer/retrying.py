"""The per-event level of retries: call a dependency until it answers, however long.

Every DependencyUnavailable is retried with the per-event RetryPolicy (capped and
jittered, so an outage of any length is waited out) and reported to the
DependencyGate. The one exception is an event that keeps failing while the same
dependency serves other events: the time between two of its failures counts against
its retry budget when another call to the dependency succeeded in between, or when
one succeeded since its failures began and no other event has failed there since.
When the counted time reaches the budget the event is parked (RetryBudgetExhausted).
In an outage nothing succeeds, nothing counts, and it is waited out however long.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from worker.consumer.gate import DependencyGate
from worker.errors import DependencyUnavailable, RetryBudgetExhausted
from worker.observability import metrics
from worker.retry import RetryPolicy

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass
class DependencyRetry:
    gate: DependencyGate
    policy: RetryPolicy
    #: Seconds an event may fail on a dependency that serves other events meanwhile.
    budget_seconds: float
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random | None = None

    async def call(
        self, dependency: str, operation: Callable[[], Awaitable[_T]], *, budgeted: bool = True
    ) -> _T:
        """``operation()``'s result, retrying while it raises DependencyUnavailable.

        ``budgeted=False`` for parking an event on the DLQ, which must never give up.
        Raises RetryBudgetExhausted when the budget is spent; lets anything else through.
        """
        retrier = object()  # this call's identity in the gate
        failures = 0
        previous: float | None = None  # when the last failure was seen
        streak_start = 0.0
        blamed = 0.0  # seconds failing while the dependency served other events
        try:
            while True:
                try:
                    result = await operation()
                except DependencyUnavailable as exc:
                    now = self.clock()
                    failures += 1
                    if previous is None:
                        streak_start = now
                    elif self.gate.served_others(exc.dependency, retrier, previous, streak_start):
                        blamed += now - previous
                    previous = now
                    self.gate.failed(exc.dependency, retrier)
                    if budgeted and blamed >= self.budget_seconds:
                        raise RetryBudgetExhausted(
                            exc.dependency, blamed, exc.error_class
                        ) from None
                    metrics.RETRIES.labels(exc.dependency).inc()
                    log.info(
                        "dependency call failed, retrying",
                        extra={
                            "dependency": exc.dependency,
                            "error_class": exc.error_class,
                            "attempt": failures,
                        },
                    )
                    await self.sleep(self.policy.delay(failures, self.rng))
                    continue
                self.gate.succeeded(dependency, retrier)
                return result
        finally:
            # Whatever ended the retry (success, poison, budget, cancellation), this event
            # no longer speaks for the dependency's health.
            self.gate.release(retrier)
