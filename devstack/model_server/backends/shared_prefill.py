"""A simulated GPU prefill: one token-processing capacity that concurrent requests share.

Processor sharing: with n requests in flight each advances at capacity/n tokens per second, so
a request of L tokens alone takes L/capacity seconds and two of them at once take twice as long
each. Admission is bounded by `max_batch_tokens`: a request that would push the prompt tokens in
flight past it waits, first come first served. The simulation runs on the event loop's timers,
so it costs no CPU however much "prefill" goes through it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Job:
    remaining: float
    done: asyncio.Future[None] = field(repr=False)


class SharedPrefill:
    """Admission queue plus processor-sharing clock; `process(L)` returns when L tokens are done."""

    def __init__(self, tokens_per_second: float | None, max_batch_tokens: int | None) -> None:
        if tokens_per_second is not None and tokens_per_second <= 0:
            raise ValueError("tokens_per_second must be positive (or None for no cost)")
        self.tokens_per_second = tokens_per_second
        self.max_batch_tokens = max_batch_tokens
        self.processed_tokens = 0.0
        self._admitted_tokens = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._jobs: list[_Job] = []
        self._last_advance = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._busy_since: float | None = None
        self._busy_seconds = 0.0

    @property
    def in_flight(self) -> int:
        return len(self._jobs)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def busy_seconds(self, now: float) -> float:
        """Seconds during which at least one request was being processed."""
        open_interval = 0.0 if self._busy_since is None else now - self._busy_since
        return self._busy_seconds + open_interval

    async def process(self, tokens: int) -> None:
        await self._admit(tokens)
        try:
            if self.tokens_per_second is None:
                self.processed_tokens += tokens
            else:
                await self._run(tokens, self.tokens_per_second)
        finally:
            self._release(tokens)

    def _fits(self, tokens: int) -> bool:
        # A request larger than the whole budget still runs, alone, or it would wait forever.
        limit = self.max_batch_tokens
        return (
            limit is None or self._admitted_tokens == 0 or self._admitted_tokens + tokens <= limit
        )

    async def _admit(self, tokens: int) -> None:
        if not self._waiting and self._fits(tokens):
            self._admitted_tokens += tokens
            return
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((tokens, ticket))
        try:
            await ticket
        except asyncio.CancelledError:
            if ticket.done() and not ticket.cancelled():
                self._release(tokens)  # admitted just as the caller went away
            else:
                self._waiting.remove((tokens, ticket))
            raise

    def _release(self, tokens: int) -> None:
        self._admitted_tokens -= tokens
        while self._waiting and self._fits(self._waiting[0][0]):
            waiting_tokens, ticket = self._waiting.popleft()
            if not ticket.done():
                self._admitted_tokens += waiting_tokens
                ticket.set_result(None)

    async def _run(self, tokens: int, rate: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._advance(now, rate)
        job = _Job(remaining=float(tokens), done=loop.create_future())
        if not self._jobs:
            self._busy_since = now
        self._jobs.append(job)
        self._reschedule(loop, rate)
        try:
            await job.done
        except asyncio.CancelledError:
            if job in self._jobs:
                self._advance(loop.time(), rate)
                self._remove(job, loop.time())
                self._reschedule(loop, rate)
            raise

    def _advance(self, now: float, rate: float) -> None:
        """Credit every job in flight with its share of the capacity since the last event."""
        if self._jobs:
            share = (now - self._last_advance) * rate / len(self._jobs)
            for job in self._jobs:
                self.processed_tokens += min(share, max(job.remaining, 0.0))
                job.remaining -= share
        self._last_advance = now

    def _remove(self, job: _Job, now: float) -> None:
        self._jobs.remove(job)
        if not self._jobs and self._busy_since is not None:
            self._busy_seconds += now - self._busy_since
            self._busy_since = None

    def _reschedule(self, loop: asyncio.AbstractEventLoop, rate: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._jobs:
            first_done = min(job.remaining for job in self._jobs) * len(self._jobs) / rate
            self._timer = loop.call_at(loop.time() + max(first_done, 0.0), self._on_timer, rate)

    def _on_timer(self, rate: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._advance(now, rate)
        # A timer may fire a hair early; one microsecond of work is "done".
        epsilon = rate * 1e-6
        for job in [job for job in self._jobs if job.remaining <= epsilon]:
            self._remove(job, now)
            if not job.done.done():
                job.done.set_result(None)
        self._timer = None
        self._reschedule(loop, rate)
