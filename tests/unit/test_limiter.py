"""InflightLimiter: bounded requests and tokens, oversized requests alone, FIFO, cancellation."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import pytest

from worker.inference.limiter import InflightLimiter


@dataclass
class Ledger:
    """What the test itself saw inside the slots: independent of the limiter's counters."""

    requests: int = 0
    tokens: int = 0
    peak_requests: int = 0
    peak_tokens: int = 0
    admitted: list[str] = field(default_factory=list)


async def hold(
    limiter: InflightLimiter, tokens: int, ledger: Ledger, name: str, release: asyncio.Event
) -> None:
    async with limiter.slot(tokens):
        ledger.admitted.append(name)
        ledger.requests += 1
        ledger.tokens += tokens
        ledger.peak_requests = max(ledger.peak_requests, ledger.requests)
        ledger.peak_tokens = max(ledger.peak_tokens, ledger.tokens)
        try:
            await release.wait()
        finally:
            ledger.requests -= 1
            ledger.tokens -= tokens


async def settle() -> None:
    """Let every task that can run, run (the limiter hands over slots without I/O)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def random_load(seed: int, limiter: InflightLimiter, sizes: tuple[int, int]) -> Ledger:
    """80 concurrent requests of random sizes, each holding its slot a few loop turns."""
    rng = random.Random(seed)
    ledger = Ledger()

    async def request(tokens: int, turns: int) -> None:
        async with limiter.slot(tokens):
            ledger.requests += 1
            ledger.tokens += tokens
            ledger.peak_requests = max(ledger.peak_requests, ledger.requests)
            ledger.peak_tokens = max(ledger.peak_tokens, ledger.tokens)
            for _ in range(turns):
                await asyncio.sleep(0)
            ledger.requests -= 1
            ledger.tokens -= tokens

    await asyncio.gather(*(request(rng.randint(*sizes), rng.randint(1, 4)) for _ in range(80)))
    return ledger


@pytest.mark.parametrize("seed", range(6))
async def test_requests_in_flight_reach_but_never_exceed_the_limit(seed: int) -> None:
    ledger = await random_load(seed, InflightLimiter(max_requests=3, max_tokens=10_000), (1, 50))
    assert ledger.peak_requests == 3


@pytest.mark.parametrize("seed", range(6))
async def test_tokens_in_flight_never_exceed_the_budget(seed: int) -> None:
    ledger = await random_load(seed, InflightLimiter(max_requests=50, max_tokens=100), (1, 100))
    assert ledger.peak_tokens <= 100


@pytest.mark.parametrize("seed", range(3))
async def test_budget_is_whole_again_after_a_random_load(seed: int) -> None:
    limiter = InflightLimiter(max_requests=4, max_tokens=100)
    await random_load(seed, limiter, (1, 100))
    assert (limiter.requests, limiter.tokens) == (0, 0)


async def test_request_within_budget_on_an_idle_limiter_is_admitted_at_once() -> None:
    limiter = InflightLimiter(max_requests=1, max_tokens=100)
    async with limiter.slot(100):
        assert (limiter.requests, limiter.tokens) == (1, 100)


async def test_request_larger_than_the_budget_on_an_idle_limiter_is_admitted() -> None:
    limiter = InflightLimiter(max_requests=4, max_tokens=100)
    async with limiter.slot(5_000):
        assert limiter.requests == 1


async def test_request_larger_than_the_budget_waits_for_an_empty_limiter() -> None:
    limiter, ledger = InflightLimiter(max_requests=4, max_tokens=100), Ledger()
    small, big = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(hold(limiter, 10, ledger, "small", small))]
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 5_000, ledger, "big", big)))
    await settle()
    assert ledger.admitted == ["small"]
    small.set()
    big.set()
    await asyncio.gather(*tasks)


async def test_request_larger_than_the_budget_runs_alone() -> None:
    limiter, ledger = InflightLimiter(max_requests=4, max_tokens=100), Ledger()
    big, small = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(hold(limiter, 5_000, ledger, "big", big))]
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 1, ledger, "small", small)))
    await settle()
    assert ledger.admitted == ["big"]
    big.set()
    small.set()
    await asyncio.gather(*tasks)


async def test_request_larger_than_the_budget_lets_the_next_in_once_done() -> None:
    limiter, ledger = InflightLimiter(max_requests=4, max_tokens=100), Ledger()
    big, small = asyncio.Event(), asyncio.Event()
    tasks = [
        asyncio.create_task(hold(limiter, 5_000, ledger, "big", big)),
        asyncio.create_task(hold(limiter, 1, ledger, "small", small)),
    ]
    await settle()
    big.set()
    await settle()
    assert ledger.admitted == ["big", "small"]
    small.set()
    await asyncio.gather(*tasks)


async def test_large_waiter_is_not_overtaken_by_later_small_ones() -> None:
    limiter, ledger = InflightLimiter(max_requests=10, max_tokens=100), Ledger()
    first, large, smalls = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(hold(limiter, 60, ledger, "first", first))]
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 80, ledger, "large", large)))
    await settle()
    # Each of these would fit next to "first" (60 + 10 <= 100), but "large" came earlier.
    tasks += [
        asyncio.create_task(hold(limiter, 10, ledger, f"small-{n}", smalls)) for n in range(3)
    ]
    await settle()
    assert ledger.admitted == ["first"]
    first.set()
    await settle()
    large.set()
    smalls.set()
    await asyncio.gather(*tasks)


async def test_waiters_are_admitted_in_arrival_order() -> None:
    limiter, ledger = InflightLimiter(max_requests=1, max_tokens=100), Ledger()
    release = asyncio.Event()
    tasks = []
    for name in ["a", "b", "c", "d"]:
        tasks.append(asyncio.create_task(hold(limiter, 10, ledger, name, release)))
        await settle()
    release.set()
    await asyncio.gather(*tasks)
    assert ledger.admitted == ["a", "b", "c", "d"]


async def test_waiters_behind_the_head_are_admitted_together_when_they_fit() -> None:
    limiter, ledger = InflightLimiter(max_requests=10, max_tokens=100), Ledger()
    first, rest = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(hold(limiter, 60, ledger, "first", first))]
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 80, ledger, "large", rest)))
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 20, ledger, "small", rest)))
    await settle()
    first.set()
    await settle()
    assert ledger.admitted == ["first", "large", "small"]
    rest.set()
    await asyncio.gather(*tasks)


async def test_cancelled_waiter_leaves_the_budget_whole() -> None:
    limiter, ledger = InflightLimiter(max_requests=1, max_tokens=100), Ledger()
    holder_done, never = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(limiter, 50, ledger, "holder", holder_done))
    await settle()
    waiter = asyncio.create_task(hold(limiter, 50, ledger, "waiter", never))
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    holder_done.set()
    await holder
    assert (limiter.requests, limiter.tokens) == (0, 0)


async def test_waiter_cancelled_just_as_it_was_granted_gives_its_slot_back() -> None:
    limiter, ledger = InflightLimiter(max_requests=1, max_tokens=100), Ledger()
    never = asyncio.Event()
    holding = limiter.slot(50)
    await holding.__aenter__()
    waiter = asyncio.create_task(hold(limiter, 50, ledger, "waiter", never))
    await settle()
    await holding.__aexit__(None, None, None)  # grants the waiter, which has not run yet
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert (limiter.requests, limiter.tokens, ledger.admitted) == (0, 0, [])


async def test_cancelled_head_waiter_does_not_block_those_behind_it() -> None:
    limiter, ledger = InflightLimiter(max_requests=10, max_tokens=100), Ledger()
    first, never, small = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(hold(limiter, 60, ledger, "first", first))]
    await settle()
    head = asyncio.create_task(hold(limiter, 80, ledger, "head", never))
    await settle()
    tasks.append(asyncio.create_task(hold(limiter, 30, ledger, "small", small)))
    await settle()
    head.cancel()
    await asyncio.gather(head, return_exceptions=True)
    await settle()
    assert ledger.admitted == ["first", "small"]
    first.set()
    small.set()
    await asyncio.gather(*tasks)


async def test_error_inside_the_slot_gives_the_budget_back() -> None:
    limiter = InflightLimiter(max_requests=2, max_tokens=100)
    with pytest.raises(RuntimeError):
        async with limiter.slot(40):
            raise RuntimeError("the request failed")
    assert (limiter.requests, limiter.tokens) == (0, 0)


@pytest.mark.parametrize(("asked", "held"), [(0, 1), (-5, 1), (40, 40), (10_000, 100)])
async def test_tokens_held_are_clamped_to_one_and_the_budget(asked: int, held: int) -> None:
    limiter = InflightLimiter(max_requests=2, max_tokens=100)
    async with limiter.slot(asked):
        assert limiter.tokens == held
