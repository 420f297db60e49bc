"""The per-event level of retries: call a dependency until it answers, however long.

Every DependencyUnavailable is retried with the per-event RetryPolicy (capped and
jittered, so an outage of any length is waited out) and reported to the
DependencyGate. The one exception is an event that keeps failing while the same
dependency serves other events: the time the gate saw the dependency serving events
(between consecutive successes, a long gap counting only in part) since the event's
failures began counts against its retry budget, and when it reaches the budget the
event is parked (RetryBudgetExhausted). In an outage nothing succeeds, nothing
counts, and it is waited out however long.
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
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random | None = None

    async def call(
        self,
        dependency: str,
        operation: Callable[[], Awaitable[_T]],
        *,
        name: str = "",
        budgeted: bool = True,
    ) -> _T:
        """``operation()``'s result, retrying while it raises DependencyUnavailable.

        ``name`` says what the operation does ("save", "lookup"): its budget is measured
        against the same operation serving other events, since a database that answers
        reads while refusing writes serves no event that needs a write.
        ``budgeted=False`` for parking an event on the DLQ, which must never give up.
        Raises RetryBudgetExhausted when the budget is spent; lets anything else through.
        """
        retrier = object()  # this call's identity in the gate
        failures = 0
        served_at_start: float | None = None  # the gate's served_seconds at the 1st failure
        try:
            while True:
                try:
                    result = await operation()
                except DependencyUnavailable as exc:
                    failures += 1
                    served = self.gate.served_seconds(exc.dependency, name)
                    if served_at_start is None:
                        served_at_start = served
                    blamed = served - served_at_start  # failing while others were served
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
                self.gate.succeeded(dependency, retrier, name)
                return result
        finally:
            # Whatever ended the retry (success, poison, budget, cancellation), this event
            # no longer speaks for the dependency's health.
            self.gate.release(retrier)
