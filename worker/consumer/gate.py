"""Which dependencies are failing right now, judged only by the events still retrying them.

An event retrying a dependency registers itself (``failed``) and leaves when its
retry ends — success, a poison answer, a spent budget or cancellation — so a
dependency can never stay "down" once nobody is retrying it.

Down means: at least ``outage_quorum`` events (default 2) are retrying it and no call
to it has succeeded since the latest failure. One event failing on its own is not an
outage (an out-of-memory prefill on one long conversation, say): intake stays open,
so other events show whether the dependency serves them, which is what the retry
budget of that one event is measured against. The loop pauses intake while any
dependency is down (but for a probe event now and then, ConsumerLoop); the
``memscore_dependency_up`` gauge follows the same verdict.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from worker.observability import metrics

log = logging.getLogger(__name__)


@dataclass
class _Dependency:
    retrying: set[object] = field(default_factory=set)
    last_failure: float = -math.inf
    last_success: float = -math.inf
    down: bool = False


@dataclass
class _Service:
    """Successes of one operation on a dependency (a read says nothing of writes)."""

    last_success: float = -math.inf
    # Seconds between consecutive successes, each gap counted up to healthy_gap_seconds.
    served_seconds: float = 0.0


class DependencyGate:
    def __init__(
        self,
        clock: Callable[[], float],
        outage_quorum: int = 2,
        healthy_gap_seconds: float = 60.0,
    ) -> None:
        if outage_quorum < 1 or healthy_gap_seconds <= 0:
            raise ValueError("outage_quorum must be at least 1, healthy_gap_seconds positive")
        self._clock = clock
        self._quorum = outage_quorum
        self._healthy_gap = healthy_gap_seconds
        self._deps: dict[str, _Dependency] = {}
        self._services: dict[tuple[str, str], _Service] = {}

    # --- what the retrying events report ---------------------------------------
    def failed(self, dependency: str, retrier: object) -> None:
        """``retrier`` (one event's retry) saw ``dependency`` fail and will try again."""
        state = self._state(dependency)
        state.retrying.add(retrier)
        state.last_failure = self._clock()
        self._update(dependency, state)

    def succeeded(self, dependency: str, retrier: object, operation: str = "") -> None:
        """A call to ``dependency`` (doing ``operation``) succeeded: it serves events."""
        state = self._state(dependency)
        state.retrying.discard(retrier)
        now = self._clock()
        state.last_success = now
        service = self._services.setdefault((dependency, operation), _Service())
        if service.last_success > -math.inf:
            service.served_seconds += min(now - service.last_success, self._healthy_gap)
        service.last_success = now
        self._update(dependency, state)

    def release(self, retrier: object) -> None:
        """``retrier`` stopped retrying without a verdict (poison, budget, cancelled)."""
        for dependency, state in self._deps.items():
            if retrier in state.retrying:
                state.retrying.discard(retrier)
                self._update(dependency, state)

    # --- what the loop and the budgets read ------------------------------------
    @property
    def healthy(self) -> bool:
        """No dependency is down: intake may run."""
        return not any(state.down for state in self._deps.values())

    def down(self) -> list[str]:
        return sorted(name for name, state in self._deps.items() if state.down)

    def retrying(self, dependency: str) -> int:
        """How many events are retrying ``dependency`` now."""
        state = self._deps.get(dependency)
        return 0 if state is None else len(state.retrying)

    def retrying_events(self) -> int:
        """How many events are retrying any dependency now."""
        return len(set().union(*(state.retrying for state in self._deps.values())))

    def served_seconds(self, dependency: str, operation: str = "") -> float:
        """How long ``dependency`` has been seen serving events: a running total.

        The time between two consecutive successful calls counts, up to
        ``healthy_gap_seconds`` for one gap: a long gap may hide an outage between two
        successes, and an outage must never count against an event's retry budget. The
        difference of two readings is how long it served events in between.
        """
        service = self._services.get((dependency, operation))
        return 0.0 if service is None else service.served_seconds

    # --- internals -------------------------------------------------------------
    def _state(self, dependency: str) -> _Dependency:
        state = self._deps.get(dependency)
        if state is None:
            state = self._deps[dependency] = _Dependency()
        return state

    def _update(self, dependency: str, state: _Dependency) -> None:
        down = len(state.retrying) >= self._quorum and state.last_failure > state.last_success
        if down != state.down:
            if down:
                log.warning(
                    "dependency unavailable, pausing intake",
                    extra={"dependency": dependency, "retrying_events": len(state.retrying)},
                )
            else:
                log.info("dependency back, resuming intake", extra={"dependency": dependency})
        state.down = down
        metrics.DEPENDENCY_UP.labels(dependency).set(0 if down else 1)
