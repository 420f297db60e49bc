"""Fault injection: random 5xx answers, latency spikes and scheduled outages.

Faults are drawn from a seeded generator, so a benchmark or test that sends the same requests
in the same order meets the same faults. Outage windows count from the moment the server
became ready; during one every route but /stats answers 503, as a server whose engine died
would (a refused connection is simulated by stopping the process, see `process.py`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outage:
    start_s: float
    end_s: float

    @classmethod
    def parse(cls, text: str) -> Outage:
        """`START:END` in seconds since the server became ready, e.g. `5:12.5`."""
        start, sep, end = text.partition(":")
        try:
            outage = cls(float(start), float(end))
        except ValueError:
            raise ValueError(f"outage {text!r} is not START:END in seconds") from None
        if not sep or not 0 <= outage.start_s < outage.end_s:
            raise ValueError(f"outage {text!r} needs 0 <= START < END")
        return outage


@dataclass(frozen=True, slots=True)
class FaultPlan:
    error_rate: float = 0.0
    latency_spike_rate: float = 0.0
    latency_spike_s: float = 0.0
    outages: tuple[Outage, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("error_rate", "latency_spike_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.latency_spike_s < 0:
            raise ValueError("latency_spike_s must not be negative")


class FaultInjector:
    """Draws the faults of each request and keeps count of them for /stats."""

    def __init__(self, plan: FaultPlan, clock: Callable[[], float] = time.monotonic) -> None:
        self._plan = plan
        self._clock = clock
        self._rng = random.Random(plan.seed)
        self._ready_at: float | None = None
        self.errors_injected = 0
        self.latency_spikes = 0
        self.outage_refusals = 0

    def mark_ready(self) -> None:
        self._ready_at = self._clock()

    def refuses_now(self) -> bool:
        """Whether an outage window is open; each True is counted as a refused request."""
        if self._ready_at is None or not self._plan.outages:
            return False
        elapsed = self._clock() - self._ready_at
        down = any(o.start_s <= elapsed < o.end_s for o in self._plan.outages)
        self.outage_refusals += down
        return down

    def draw_error_status(self) -> int | None:
        """500 or 503 for a request picked to fail, None otherwise."""
        if self._plan.error_rate == 0 or self._rng.random() >= self._plan.error_rate:
            return None
        self.errors_injected += 1
        return self._rng.choice((500, 503))

    def draw_latency_spike(self) -> float:
        """Extra seconds this request should wait (0.0 for most)."""
        if (
            self._plan.latency_spike_rate == 0
            or self._rng.random() >= self._plan.latency_spike_rate
        ):
            return 0.0
        self.latency_spikes += 1
        return self._plan.latency_spike_s
