"""CircuitBreaker state tables. The breaker is handed the time, so no clock is faked."""

from __future__ import annotations

import pytest

from worker.inference.breaker import BreakerState, CircuitBreaker

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
THRESHOLD, RESET = 3, 10.0

# A step is (what happened, when): "fail", "ok" (success), "start" (a call starts),
# "abandon" (a call ended without a verdict, e.g. cancelled).
Step = tuple[str, float]


def breaker_after(steps: list[Step]) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=THRESHOLD, reset_seconds=RESET)
    for what, when in steps:
        if what == "fail":
            breaker.on_failure(when)
        elif what == "ok":
            breaker.on_success()
        elif what == "start":
            breaker.on_start(when)
        elif what == "abandon":
            breaker.on_abandon()
        else:
            raise ValueError(what)
    return breaker


OPENED_AT_2: list[Step] = [("fail", 0.0), ("fail", 1.0), ("fail", 2.0)]


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([], 0.0, CLOSED),
        ([("fail", 0.0), ("fail", 1.0)], 1.0, CLOSED),
        (OPENED_AT_2, 2.0, OPEN),
        (OPENED_AT_2, 11.9, OPEN),
        (OPENED_AT_2, 12.0, HALF_OPEN),
        (OPENED_AT_2, 1_000.0, HALF_OPEN),
        # failures must be consecutive: a success starts the count again
        ([("fail", 0.0), ("fail", 1.0), ("ok", 1.5), ("fail", 2.0), ("fail", 3.0)], 3.0, CLOSED),
        # a success while open (a call that started before it opened) closes it
        ([*OPENED_AT_2, ("ok", 3.0)], 3.0, CLOSED),
        # half-open: the trial's success closes ...
        ([*OPENED_AT_2, ("start", 12.0), ("ok", 12.5)], 12.5, CLOSED),
        # ... its failure opens again for a whole reset period, from the failure
        ([*OPENED_AT_2, ("start", 12.0), ("fail", 13.0)], 13.0, OPEN),
        ([*OPENED_AT_2, ("start", 12.0), ("fail", 13.0)], 22.9, OPEN),
        ([*OPENED_AT_2, ("start", 12.0), ("fail", 13.0)], 23.0, HALF_OPEN),
        # once closed again, it takes the full threshold to open
        ([*OPENED_AT_2, ("start", 12.0), ("ok", 12.5), ("fail", 13.0), ("fail", 14.0)], 14, CLOSED),
        (
            [*OPENED_AT_2, ("start", 12), ("ok", 12.5), ("fail", 13), ("fail", 14), ("fail", 15)],
            15.0,
            OPEN,
        ),
        # a trial that ends without a verdict leaves it half-open
        ([*OPENED_AT_2, ("start", 12.0), ("abandon", 12.5)], 12.5, HALF_OPEN),
    ],
)
def test_state(steps: list[Step], now: float, expected: BreakerState) -> None:
    assert breaker_after(steps).state(now) is expected


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([], 0.0, True),
        ([("fail", 0.0)], 0.0, True),
        (OPENED_AT_2, 5.0, False),
        (OPENED_AT_2, 12.0, True),  # half-open: one trial may go
        ([*OPENED_AT_2, ("start", 12.0)], 12.0, False),  # ... and only one
        ([*OPENED_AT_2, ("start", 12.0)], 500.0, False),  # however long it takes
        ([*OPENED_AT_2, ("start", 12.0), ("abandon", 12.5)], 12.5, True),
        ([*OPENED_AT_2, ("start", 12.0), ("fail", 13.0)], 13.0, False),
        ([*OPENED_AT_2, ("start", 12.0), ("ok", 13.0)], 13.0, True),
        # calls starting while closed never take the half-open trial
        ([("start", 0.0), ("start", 0.0)], 0.0, True),
    ],
)
def test_allows(steps: list[Step], now: float, expected: bool) -> None:
    assert breaker_after(steps).allows(now) is expected


@pytest.mark.parametrize(
    ("steps", "now", "expected"),
    [
        ([], 0.0, 0.0),
        ([("fail", 0.0)], 0.0, 0.0),
        (OPENED_AT_2, 2.0, 10.0),
        (OPENED_AT_2, 5.0, 7.0),
        (OPENED_AT_2, 12.0, 0.0),
        (OPENED_AT_2, 50.0, 0.0),
        ([*OPENED_AT_2, ("start", 12.0), ("fail", 13.0)], 14.0, 9.0),
    ],
)
def test_seconds_until_trial(steps: list[Step], now: float, expected: float) -> None:
    assert breaker_after(steps).seconds_until_trial(now) == pytest.approx(expected)


@pytest.mark.parametrize("threshold", [1, 2, 5])
def test_opens_on_exactly_the_thresholdth_consecutive_failure(threshold: int) -> None:
    breaker = CircuitBreaker(failure_threshold=threshold, reset_seconds=RESET)
    states = []
    for _ in range(threshold):
        breaker.on_failure(0.0)
        states.append(breaker.state(0.0))
    assert states == [CLOSED] * (threshold - 1) + [OPEN]


def test_state_values_are_the_metric_encoding() -> None:
    # memscore_circuit_breaker_state documents 0 closed, 1 half-open, 2 open
    assert [int(s) for s in (CLOSED, HALF_OPEN, OPEN)] == [0, 1, 2]
