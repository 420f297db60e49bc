"""The server's own counters, served at GET /stats so benchmarks can compute utilisation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ServerStats:
    """Counts chat completions and the time during which at least one was in flight."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._started_at = clock()
        self.requests_served = 0
        self.requests_failed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.in_flight = 0
        self._busy_since: float | None = None
        self._busy_seconds = 0.0

    @contextmanager
    def chat_request(self) -> Iterator[None]:
        if self.in_flight == 0:
            self._busy_since = self._clock()
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            if self.in_flight == 0 and self._busy_since is not None:
                self._busy_seconds += self._clock() - self._busy_since
                self._busy_since = None

    def record_served(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests_served += 1
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    def busy_seconds(self) -> float:
        now = self._clock()
        return self._busy_seconds + (0.0 if self._busy_since is None else now - self._busy_since)

    def snapshot(self) -> dict[str, float | int]:
        return {
            "uptime_seconds": self._clock() - self._started_at,
            "requests_served": self.requests_served,
            "requests_failed": self.requests_failed,
            "prompt_tokens_processed": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "in_flight": self.in_flight,
            "busy_seconds": self.busy_seconds(),
        }
