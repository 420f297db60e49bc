"""An asyncio event loop on a virtual clock: sleeping costs no real time.

The selector never blocks: asked to wait ``timeout`` seconds, it moves the clock
forward by that much instead. Hours of outages and backoff run in milliseconds, and
a run is deterministic for a given schedule (nothing real-time can interleave).
Only for code that does no real I/O (the simulation's fakes).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class SimulationStuck(AssertionError):
    """Nothing is scheduled and nothing can wake up: the simulated system hangs."""


class _VirtualSelector(selectors.SelectSelector):  # registers the self-pipe, never polls it
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise SimulationStuck("every task waits and no timer is set")
        if timeout > 0:
            self.now += timeout
        # Nothing real is ever ready: the fakes do no I/O and no other thread wakes the loop.
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` to completion on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main)
    finally:
        # As asyncio.run does: a failed run leaves tasks behind; finish them here, not
        # in the garbage collector during the next run.
        leftover = asyncio.all_tasks(loop)
        for task in leftover:
            task.cancel()
        if leftover:
            loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
