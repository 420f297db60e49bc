"""The retry policy: capped, jittered, and defined for any number of failures."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.retry import RetryPolicy
from worker.settings import load_settings


@pytest.mark.parametrize(
    ("failures", "ceiling"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (10_000, 30.0), (10**9, 30.0)],
)
def test_the_ceiling_doubles_then_stays_at_the_cap(failures: int, ceiling: float) -> None:
    assert RetryPolicy(0.5, 30.0).ceiling(failures) == ceiling


def test_a_six_hour_outage_of_one_second_retries_never_overflows() -> None:
    # The old loops computed base * 2**attempt before capping: OverflowError at ~1024.
    policy = RetryPolicy(base_seconds=1e-3, max_seconds=1.0)
    delays = [policy.delay(n, random.Random(n)) for n in range(1, 6 * 3600 + 1)]
    assert max(delays) <= 1.0
    assert min(delays[-100:]) >= 0.5


@given(
    base=st.floats(1e-6, 100),
    cap=st.floats(1e-6, 1000),
    failures=st.integers(1, 10**12),
    seed=st.integers(0, 2**32),
)
def test_every_delay_lies_in_the_upper_half_of_its_capped_ceiling(
    base: float, cap: float, failures: int, seed: int
) -> None:
    policy = RetryPolicy(base, cap)
    ceiling = policy.ceiling(failures)
    delay = policy.delay(failures, random.Random(seed))
    assert ceiling <= cap
    assert ceiling / 2 <= delay <= ceiling


def test_a_bounded_policy_gives_up_after_its_attempts_and_an_unbounded_one_never() -> None:
    bounded = RetryPolicy(0.1, 1.0, max_attempts=3)
    assert [bounded.gives_up_after(n) for n in (1, 2, 3)] == [False, False, True]
    assert not RetryPolicy(0.1, 1.0).gives_up_after(10**9)


def test_the_two_levels_come_from_the_same_settings() -> None:
    settings = load_settings(retry_base_seconds=0.2, retry_max_seconds=7, vllm_max_attempts=4)
    assert RetryPolicy.per_request(settings) == RetryPolicy(0.2, 7.0, 4)
    assert RetryPolicy.per_event(settings) == RetryPolicy(0.2, 7.0, None)


@pytest.mark.parametrize("bad", [{"base_seconds": 0}, {"max_seconds": -1}, {"max_attempts": 0}])
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**bad)  # type: ignore[arg-type]
