"""DependencyGate: down only while events are retrying, and only when it looks like an outage."""

from __future__ import annotations

from worker.consumer.gate import DependencyGate


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_event_failing_alone_is_not_an_outage() -> None:
    gate = DependencyGate(Clock())
    gate.failed("vllm", "event-a")
    assert gate.healthy
    assert gate.retrying("vllm") == 1


def test_two_events_failing_with_no_success_since_is_an_outage() -> None:
    gate = DependencyGate(Clock())
    gate.failed("vllm", "event-a")
    gate.failed("vllm", "event-b")
    assert not gate.healthy
    assert gate.down() == ["vllm"]


def test_a_success_opens_the_gate_while_others_still_retry() -> None:
    clock = Clock()
    gate = DependencyGate(clock)
    gate.failed("vllm", "event-a")
    gate.failed("vllm", "event-b")
    clock.now = 1.0
    gate.succeeded("vllm", "event-c")
    assert gate.healthy
    assert gate.retrying("vllm") == 2


def test_an_event_that_stops_retrying_for_any_reason_leaves_the_gate() -> None:
    # A 503 then a poison answer: the event is parked and must not keep vllm down.
    gate = DependencyGate(Clock())
    gate.failed("vllm", "event-a")
    gate.failed("vllm", "event-b")
    gate.release("event-a")
    assert gate.healthy
    gate.release("event-b")
    assert gate.retrying("vllm") == 0
    assert gate.retrying_events() == 0


def test_dependencies_are_judged_apart() -> None:
    gate = DependencyGate(Clock())
    for event in ("a", "b"):
        gate.failed("postgres", event)
    gate.failed("vllm", "c")
    assert gate.down() == ["postgres"]
    assert gate.retrying_events() == 3


def test_served_time_is_the_gaps_between_successes_each_capped() -> None:
    clock = Clock()
    gate = DependencyGate(clock, healthy_gap_seconds=10.0)
    for t in (1.0, 3.0, 6.0):  # two gaps: 2 s and 3 s
        clock.now = t
        gate.succeeded("vllm", f"event-{t}")
    assert gate.served_seconds("vllm") == 5.0
    clock.now = 506.0  # a long gap may hide an outage: it counts 10 s at most
    gate.succeeded("vllm", "after-the-gap")
    assert gate.served_seconds("vllm") == 15.0


def test_failures_alone_never_count_as_served_time() -> None:
    clock = Clock()
    gate = DependencyGate(clock)
    for t in range(100):
        clock.now = float(t)
        gate.failed("vllm", "a")
        gate.failed("vllm", "b")
    assert gate.served_seconds("vllm") == 0.0


def test_the_gate_alone_sets_the_dependency_gauge() -> None:
    from worker.observability.metrics import REGISTRY

    def up() -> float | None:
        return REGISTRY.get_sample_value("memscore_dependency_up", {"dependency": "gate-test"})

    clock = Clock()
    gate = DependencyGate(clock)
    gate.failed("gate-test", "a")
    gate.failed("gate-test", "b")
    assert up() == 0.0
    clock.now = 1.0
    gate.succeeded("gate-test", "c")
    assert up() == 1.0
