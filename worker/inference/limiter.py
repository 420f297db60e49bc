"""One shared budget of in-flight requests and prompt tokens for the whole process.

vLLM's memory for prompt logprobs grows with prompt tokens x vocabulary, so the
number of tokens in flight is bounded, not only the number of requests. A request
larger than the whole token budget is admitted alone (it would never fit otherwise).
Waiters are served in arrival order so a large request is not starved by small ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from worker.observability import metrics


class InflightLimiter:
    def __init__(self, max_requests: int, max_tokens: int) -> None:
        self.max_requests = max_requests
        self.max_tokens = max_tokens
        self.requests = 0
        self.tokens = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        metrics.INFLIGHT_LIMIT.labels("requests").set(max_requests)
        metrics.INFLIGHT_LIMIT.labels("prompt_tokens").set(max_tokens)

    def _fits(self, tokens: int) -> bool:
        if self.requests >= self.max_requests:
            return False
        return self.requests == 0 or self.tokens + tokens <= self.max_tokens

    def _take(self, tokens: int) -> None:
        self.requests += 1
        self.tokens += tokens
        metrics.INFLIGHT_REQUESTS.set(self.requests)
        metrics.INFLIGHT_PROMPT_TOKENS.set(self.tokens)

    def _release(self, tokens: int) -> None:
        self.requests -= 1
        self.tokens -= tokens
        metrics.INFLIGHT_REQUESTS.set(self.requests)
        metrics.INFLIGHT_PROMPT_TOKENS.set(self.tokens)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            tokens, future = self._waiters[0]
            if future.done():  # cancelled while waiting
                self._waiters.popleft()
                continue
            if not self._fits(tokens):
                return
            self._waiters.popleft()
            self._take(tokens)
            future.set_result(None)

    @asynccontextmanager
    async def slot(self, tokens: int) -> AsyncIterator[None]:
        """Hold one request and ``tokens`` prompt tokens of the budget."""
        tokens = max(1, min(tokens, self.max_tokens))
        if not self._waiters and self._fits(tokens):
            self._take(tokens)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append((tokens, future))
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release(tokens)  # granted just as we were cancelled
                else:
                    self._wake()  # we may have been the head blocking others
                raise
        try:
            yield
        finally:
            self._release(tokens)
