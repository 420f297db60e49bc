"""Stop the process when an abnormal share of recent events went to the DLQ.

A bad deploy (a parser bug, a wrong model name) would otherwise drain the whole
input topic into the DLQ; stopping makes it page someone instead.
"""

from __future__ import annotations

from collections import deque


class DlqGuard:
    def __init__(self, window: int, max_ratio: float) -> None:
        self.window = window
        self.max_ratio = max_ratio
        self._recent: deque[bool] = deque(maxlen=window)

    def record(self, dead_lettered: bool) -> None:
        self._recent.append(dead_lettered)

    @property
    def tripped(self) -> bool:
        if len(self._recent) < self.window:
            return False
        return sum(self._recent) / self.window >= self.max_ratio

    def describe(self) -> str:
        return f"{sum(self._recent)} of the last {len(self._recent)} events went to the DLQ"
