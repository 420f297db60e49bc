"""Run the real RecordProcessor, ConsumerLoop and DependencyGate over a fault schedule.

Everything but the four fakes is memscore's own code as `memscore run` wires it:
decoding, the per-event retries, the gate, the DLQ and result parts, offsets,
pause/resume, probes, rebalances, drain. A worker can be stopped (once or twice, as
a second SIGTERM) and restarted any number of times; the broker, the store and the
committed offsets outlive it.
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field

from tests.simulation.fakes import (
    DLQ,
    TOPIC,
    Broker,
    EventScript,
    FakeConsumer,
    FakeProducer,
    FakeScorer,
    FakeStore,
    FaultPlan,
    identity,
    now,
)
from worker.consumer.dead_letters import DeadLetterQueue
from worker.consumer.gate import DependencyGate
from worker.consumer.guard import DlqGuard
from worker.consumer.loop import ConsumerLoop, LoopOptions
from worker.consumer.processor import RecordProcessor
from worker.consumer.producer import Record
from worker.consumer.results import ResultPublisher
from worker.consumer.retrying import DependencyRetry
from worker.observability.health import HealthState
from worker.retry import RetryPolicy

RETRY = RetryPolicy(base_seconds=0.1, max_seconds=4.0)
BUDGET_SECONDS = 20.0
PROBE_SECONDS = 1.0
#: Once every fault has cleared, everything must be finished within this long.
DRAIN_SECONDS = 600.0


@dataclass(frozen=True)
class EventSpec:
    event_id: str
    source: str | None  # CloudEvents source; None: a bare v1 event
    script: EventScript

    @property
    def key(self) -> str:
        return identity(self.source, self.event_id)

    def payload(self) -> bytes:
        data = {
            "event_id": self.event_id,
            "conversation_id": f"c-{self.key}",
            "system_prompt": "You are helpful.",
            "entries": [
                {"type": "memory", "key": "pet.dog", "content": "The dog is Biscuit."},
                {"type": "memory", "key": "home.city", "content": "Lives in Łódź."},
                {"type": "message", "role": "user", "content": "Dog's name?"},
                {"type": "message", "role": "assistant", "content": "Biscuit."},
            ],
        }
        if self.source is None:
            return json.dumps(data).encode()
        envelope = {
            "specversion": "1.0",
            "id": self.event_id,
            "source": self.source,
            "type": "conversation.closed",
            "data": {k: v for k, v in data.items() if k != "event_id"},
        }
        return json.dumps(envelope).encode()


@dataclass(frozen=True)
class Placement:
    """One record of the input topic: an event (or garbage) on a partition."""

    partition: int
    event: EventSpec | None  # None: a record that is not an event at all
    garbage: bytes | None = b"\xff not json"


@dataclass
class Schedule:
    records: list[Placement]
    partitions: int
    faults: FaultPlan
    rebalances: list[float] = field(default_factory=list)
    #: Stop times of successive worker lives; True means a second signal follows.
    stops: list[tuple[float, bool]] = field(default_factory=list)
    max_inflight: int = 4
    seed: int = 0
    #: The per-event retry policy and the loop's tick (coarser for hours-long runs).
    retry: RetryPolicy = RETRY
    tick_seconds: float = 1.0


class ObservedProcessor(RecordProcessor):
    """The real processor, noting which offsets it finished (the commit check reads it)."""

    broker: Broker

    async def process(self, record: Record) -> str:
        outcome = await super().process(record)
        self.broker.ledger.finished.add((record.partition, record.offset))
        return outcome


@dataclass
class Result:
    broker: Broker
    store: FakeStore
    drained: bool
    finished_at: float
    gates: list[DependencyGate]
    consumers: list[FakeConsumer]
    delivered_before_stored: dict[str, int]


async def simulate(schedule: Schedule) -> Result:
    values: list[list[bytes | None]] = [[] for _ in range(schedule.partitions)]
    keys_at: dict[tuple[int, int], str] = {}
    scripts: dict[str, EventScript] = {}
    for placement in schedule.records:
        log = values[placement.partition]
        if placement.event is None:
            log.append(placement.garbage)
            continue
        keys_at[(placement.partition, len(log))] = placement.event.key
        scripts[placement.event.key] = placement.event.script
        log.append(placement.event.payload())
    broker = Broker(values, schedule.faults)
    store = FakeStore(broker, scripts)
    scorer = FakeScorer(broker, store, scripts)
    producer = FakeProducer(broker)
    rng = random.Random(schedule.seed)
    deadline = schedule.faults.clears_at + DRAIN_SECONDS
    gates: list[DependencyGate] = []
    consumers: list[FakeConsumer] = []
    delivered: dict[str, list[float]] = {}

    def all_committed() -> bool:
        return all(broker.committed.get(p, 0) == len(log) for p, log in enumerate(values))

    stops = list(schedule.stops)
    drained = False
    while True:
        # As `memscore run` does: a gap of two probe intervals at most counts as served.
        gate = DependencyGate(now, healthy_gap_seconds=2 * PROBE_SECONDS)
        gates.append(gate)
        processor = ObservedProcessor(
            scorer=scorer,
            store=store,
            results=ResultPublisher(producer, "memory-scored"),
            dead_letters=DeadLetterQueue(producer, DLQ),
            retry=DependencyRetry(gate, schedule.retry, BUDGET_SECONDS, rng=rng),
            max_event_bytes=1 << 20,
        )
        processor.broker = broker
        consumer = _Watched(
            broker, [t for t in schedule.rebalances if t > now()], keys_at, delivered
        )
        consumers.append(consumer)
        loop = ConsumerLoop(
            consumer,
            processor,
            gate,
            DlqGuard(window=1 << 30, max_ratio=1.0),
            HealthState(stale_after_seconds=60),
            LoopOptions(
                topic=TOPIC,
                max_inflight=schedule.max_inflight,
                shutdown_grace_seconds=5.0,
                rebalance_drain_seconds=2.0,
                probe_interval_seconds=PROBE_SECONDS,
                poll_ms=int(schedule.tick_seconds * 1000),
            ),
        )
        running = asyncio.ensure_future(loop.run())
        stop = stops.pop(0) if stops else None
        while not running.done():
            await asyncio.sleep(schedule.tick_seconds)
            _check_gate(gate, loop)
            if stop is not None and now() >= stop[0]:
                loop.request_stop()
                if stop[1]:
                    await asyncio.sleep(0.1)
                    loop.request_stop()
                stop = None
                break
            if stop is None and all_committed():
                drained = True
                loop.request_stop()
                break
            if now() > deadline:
                loop.request_stop()
                loop.request_stop()
                break
        await running
        if drained or now() > deadline:
            break
        await asyncio.sleep(1.0)  # the restart

    before = {
        key: sum(1 for t in delivered.get(key, []) if t < stored_at)
        for key, stored_at in store.stored_at.items()
    }
    return Result(broker, store, drained, now(), gates, consumers, before)


def _check_gate(gate: DependencyGate, loop: ConsumerLoop) -> None:
    # Every event the gate counts as retrying is one the loop still runs: none is left
    # registered after its retry ended (it would keep a dependency "down" for ever).
    in_flight = len(loop._tasks)
    assert gate.retrying_events() <= in_flight, (
        f"{gate.retrying_events()} retrying, {in_flight} in flight"
    )
    for dependency in gate.down():
        assert gate.retrying(dependency) >= 2, f"{dependency} down with fewer than two retrying"


class _Watched(FakeConsumer):
    """Notes when each event's records are handed to the worker."""

    def __init__(
        self,
        broker: Broker,
        rebalances: list[float],
        keys_at: dict[tuple[int, int], str],
        delivered: dict[str, list[float]],
    ) -> None:
        super().__init__(broker, rebalances)
        self._keys_at = keys_at
        self._delivered = delivered

    async def getmany(self, *partitions, timeout_ms=0, max_records=None):  # type: ignore[no-untyped-def]
        batch = await super().getmany(*partitions, timeout_ms=timeout_ms, max_records=max_records)
        for records in batch.values():
            for record in records:
                key = self._keys_at.get((record.partition, record.offset))
                if key is not None:
                    self._delivered.setdefault(key, []).append(now())
        return batch
