"""The consumer loop: fetch, schedule, commit contiguously, pause under pressure, drain.

One asyncio task per event, at most MAX_INFLIGHT_CONVERSATIONS at once. The loop
never waits on scoring: it keeps calling getmany() (paused when full or while a
dependency is down), so heartbeats, max_poll_interval and rebalances keep working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from worker.consumer.gate import DependencyGate
from worker.consumer.guard import DlqGuard
from worker.consumer.offsets import OffsetTracker, Ticket
from worker.consumer.processor import RecordProcessor
from worker.errors import DlqGuardTripped, FatalError
from worker.observability import metrics
from worker.observability.health import HealthState

log = logging.getLogger(__name__)


class Consumer(Protocol):
    """The parts of AIOKafkaConsumer the loop uses (an in-memory one drives simulations)."""

    def subscribe(self, topics: list[str], *, listener: ConsumerRebalanceListener) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    async def committed(self, partition: TopicPartition) -> int | None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...


@dataclass
class LoopOptions:
    topic: str
    max_inflight: int
    shutdown_grace_seconds: float
    rebalance_drain_seconds: float = 10.0
    #: How long one fetch waits for records; also the loop's tick.
    poll_ms: int = 200
    #: While a dependency is down, one event is let in this often to find out whether
    #: it is back (RETRY_MAX_SECONDS in `memscore run`).
    probe_interval_seconds: float = 30.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.on_assigned(set(assigned))


class ConsumerLoop:
    def __init__(
        self,
        consumer: Consumer,
        processor: RecordProcessor,
        gate: DependencyGate,
        guard: DlqGuard,
        health: HealthState,
        options: LoopOptions,
    ) -> None:
        self.consumer = consumer
        self.processor = processor
        self.gate = gate
        self.guard = guard
        self.health = health
        self.options = options
        self.tracker = OffsetTracker()
        self._tasks: dict[asyncio.Task[str], Ticket] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._paused = False
        self._next_probe: float | None = None
        self._task_failed: BaseException | None = None
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        metrics.INFLIGHT_LIMIT.labels("conversations").set(options.max_inflight)

    # --- lifecycle -------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: drain and exit. Second call: stop waiting for in-flight work."""
        if self._stop.is_set():
            log.warning("second stop signal: abandoning in-flight work")
            self._force.set()
        else:
            log.info("stop requested: draining in-flight work")
            self._stop.set()

    async def run(self) -> None:
        """Consume until stopped. Raises DlqGuardTripped when the DLQ guard trips."""
        self.consumer.subscribe([self.options.topic], listener=_Listener(self))
        self.health.consumer_running = True
        try:
            while not self._stop.is_set():
                self.health.tick()
                allowance, probing = self._intake_allowance()
                self._apply_backpressure(pause=allowance == 0)
                batch = await self.consumer.getmany(
                    timeout_ms=self.options.poll_ms, max_records=max(1, allowance)
                )
                started = 0
                for tp, records in batch.items():
                    for record in records:
                        self._start(tp, record)
                        started += 1
                if started and probing:
                    self._next_probe = (
                        asyncio.get_running_loop().time() + self.options.probe_interval_seconds
                    )
                    log.info(
                        "admitted a probe event",
                        extra={"down": self.gate.down(), "in_flight": len(self._tasks)},
                    )
                await self._commit(self.consumer.assignment())
                self._export_lag()
                if self.guard.tripped:
                    raise DlqGuardTripped(f"DLQ guard tripped: {self.guard.describe()}")
                if self._task_failed is not None:
                    raise FatalError(
                        f"an event's task died ({type(self._task_failed).__name__}); "
                        "its partition could not commit past it"
                    )
        finally:
            self.health.consumer_running = False
            await self._drain()

    # --- scheduling ------------------------------------------------------------
    def _start(self, tp: TopicPartition, record: Any) -> None:
        ticket = self.tracker.start(tp, record.offset)
        task = asyncio.create_task(
            self.processor.process(record), name=f"event-{tp}-{record.offset}"
        )
        self._tasks[task] = ticket
        task.add_done_callback(self._finished)
        metrics.INFLIGHT_CONVERSATIONS.set(len(self._tasks))

    def _finished(self, task: asyncio.Task[str]) -> None:
        ticket = self._tasks.pop(task)
        metrics.INFLIGHT_CONVERSATIONS.set(len(self._tasks))
        if task.cancelled():
            return  # not done: the next owner of the partition redoes it
        exc = task.exception()
        if exc is not None:
            # process() parks every failure on the DLQ, so this is a bug in that path. The
            # offset stays unfinished and nothing after it on the partition is committed
            # until the partition is reassigned (a rebalance, a restart): say so instead of
            # stalling silently.
            log.error(
                "event task failed: stopping, so that the partition is not frozen",
                extra={"exc_type": type(exc).__name__, "task": task.get_name()},
            )
            # Nothing after it on its partition could be committed while the probes
            # stayed green: stop, and let the restart redo it.
            self._task_failed = exc
            return
        outcome = task.result()
        self.tracker.finish(ticket)
        metrics.EVENTS_CONSUMED.labels(outcome).inc()
        self.guard.record(outcome == "dlq")

    def _intake_allowance(self) -> tuple[int, bool]:
        """How many new events may start now (0 pauses intake), and whether as a probe.

        While a dependency is down, or while every slot is held by an event waiting on
        one, a probe event is let in now and then (up to twice the limit): if
        it goes through, the dependency serves events, the gate opens again and the
        events that keep failing on their own are judged by their retry budgets; if it
        fails, it waits with the others. Without probes, two bad conversations at once
        (or one holding the only slot) would look like an outage for ever.
        """
        room = self.options.max_inflight - len(self._tasks)
        if room > 0 and self.gate.healthy:
            self._next_probe = None
            return room, False
        # Every slot held by events waiting on a dependency: probe beyond the limit, up to
        # twice it, so that even that many conversations failing on their own at once
        # cannot stop intake for good (a real outage fills it, and stops there).
        stalled = (
            room <= 0
            and len(self._tasks) < 2 * self.options.max_inflight
            and self.gate.retrying_events() >= len(self._tasks)
        )
        if not ((room > 0 and not self.gate.healthy) or stalled):
            self._next_probe = None
            return 0, False
        now = asyncio.get_running_loop().time()
        if self._next_probe is None:
            self._next_probe = now + self.options.probe_interval_seconds
        return (1, True) if now >= self._next_probe else (0, False)

    def _apply_backpressure(self, *, pause: bool) -> None:
        assignment = self.consumer.assignment()
        if pause and assignment:
            self.consumer.pause(*assignment)
        elif self._paused and assignment:
            self.consumer.resume(*assignment)
        if pause != self._paused:
            log.debug("intake paused" if pause else "intake resumed")
        self._paused = pause
        metrics.CONSUMER_PAUSED.set(int(pause))

    # --- commits and lag -------------------------------------------------------
    async def _commit(self, partitions: set[TopicPartition]) -> None:
        offsets = {}
        for tp in partitions:
            offset = self.tracker.committable(tp)
            if offset is not None and offset != self._committed.get(tp):
                offsets[tp] = offset
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # A rebalance is under way or the broker is away: the offsets stay
            # uncommitted and the work is redone by the next owner at worst.
            log.warning("commit failed", extra={"exc_type": type(exc).__name__})
            return
        for tp, offset in offsets.items():
            self._committed[tp] = offset
            metrics.COMMITTED_OFFSET.labels(tp.topic, str(tp.partition)).set(offset)

    def _export_lag(self) -> None:
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            committed = self._committed.get(tp)
            if highwater is not None and committed is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(
                    max(0, highwater - committed)
                )

    # --- rebalance -------------------------------------------------------------
    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp in assigned:
            self.tracker.forget(tp)
            try:
                committed = await self.consumer.committed(tp)
            except KafkaError:
                committed = None
            if committed is not None:
                self._committed[tp] = committed
        metrics.PARTITIONS_ASSIGNED.set(len(self.consumer.assignment()))
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        mine = [t for t, ticket in self._tasks.items() if ticket.partition in revoked]
        if mine:
            await self._wait(mine, self.options.rebalance_drain_seconds)
        await self._commit(revoked)
        for task in [t for t, ticket in self._tasks.items() if ticket.partition in revoked]:
            task.cancel()
        for tp in revoked:
            self.tracker.forget(tp)
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    # --- shutdown --------------------------------------------------------------
    async def _wait(self, tasks: list[asyncio.Task[str]], limit_seconds: float) -> None:
        """Until the tasks are done, the timeout passes, or a second signal forces."""
        all_done = asyncio.ensure_future(asyncio.wait(tasks))
        forced = asyncio.ensure_future(self._force.wait())
        try:
            await asyncio.wait(
                [all_done, forced], timeout=limit_seconds, return_when="FIRST_COMPLETED"
            )
        finally:
            all_done.cancel()  # cancels the waiting, not the tasks
            forced.cancel()

    async def _drain(self) -> None:
        assignment = self.consumer.assignment()
        if assignment:
            self.consumer.pause(*assignment)
        tasks = list(self._tasks)
        if tasks:
            log.info("draining", extra={"in_flight": len(tasks)})
            await self._wait(tasks, self.options.shutdown_grace_seconds)
        if not self._force.is_set():
            await self._commit(self.consumer.assignment())
        leftover = list(self._tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
            log.warning("abandoned unfinished events", extra={"count": len(leftover)})
