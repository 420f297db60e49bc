"""The one retry policy: capped, jittered exponential backoff, built once from settings.

Two levels use it, nested (README, "Retries"):

- per request, in the vLLM client: a failed request is retried up to
  ``MEMSCORE_VLLM_MAX_ATTEMPTS`` times (a bounded policy), then the event's scoring
  fails with the last error;
- per event, in the record processor: a dependency failure (vLLM, PostgreSQL, Kafka)
  is retried for as long as it takes (an unbounded policy), so an outage of any length
  is waited out; only ``MEMSCORE_EVENT_RETRY_BUDGET_SECONDS`` of failing while the
  dependency serves other events parks the event.

Pure: the caller sleeps, and hands in the random source where it wants determinism.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.settings import Settings

# 2.0 ** 1024 overflows a float: past this many doublings every delay is the cap anyway.
_MAX_DOUBLINGS = 1000


@dataclass(frozen=True)
class RetryPolicy:
    """Delays of ``base * 2**attempt`` capped at ``max_seconds``, jittered to [d/2, d].

    ``max_attempts`` bounds the number of tries (None: retry for ever).
    """

    base_seconds: float = 0.5
    max_seconds: float = 30.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (self.base_seconds > 0 and self.max_seconds > 0):
            raise ValueError("retry delays must be positive")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    @classmethod
    def per_request(cls, settings: Settings) -> RetryPolicy:
        """A model request: at most MEMSCORE_VLLM_MAX_ATTEMPTS tries."""
        return cls(
            settings.retry_base_seconds, settings.retry_max_seconds, settings.vllm_max_attempts
        )

    @classmethod
    def per_event(cls, settings: Settings) -> RetryPolicy:
        """An event's dependency calls: for as long as it takes."""
        return cls(settings.retry_base_seconds, settings.retry_max_seconds, None)

    def ceiling(self, failures: int) -> float:
        """The longest wait after ``failures`` consecutive failures (1 or more)."""
        doublings = min(max(0, failures - 1), _MAX_DOUBLINGS)
        if doublings >= math.log2(self.max_seconds / self.base_seconds) + 1:
            return self.max_seconds
        return min(self.max_seconds, self.base_seconds * 2.0**doublings)

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """How long to wait after ``failures`` consecutive failures; jitter spreads a herd."""
        ceiling = self.ceiling(failures)
        return (rng or random).uniform(ceiling / 2, ceiling)

    def gives_up_after(self, failures: int) -> bool:
        """True when ``failures`` tries have failed and no further try is allowed."""
        return self.max_attempts is not None and failures >= self.max_attempts
