"""`memscore run`: the daemon's lifecycle — start, loop, drain, close.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 on a crash or when a
dependency cannot be reached at start-up, 2 for bad settings, 3 when the DLQ
guard stops the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from worker import SCORER_VERSION, __version__
from worker.consumer.dead_letters import DeadLetterQueue
from worker.consumer.gate import DependencyGate
from worker.consumer.guard import DlqGuard
from worker.consumer.kafka import build_consumer, build_producer
from worker.consumer.loop import ConsumerLoop, LoopOptions
from worker.consumer.processor import RecordProcessor
from worker.consumer.results import ResultPublisher
from worker.consumer.retrying import DependencyRetry
from worker.errors import DlqGuardTripped, FatalError
from worker.inference.client import ClientConfig, InferenceClient
from worker.inference.limiter import InflightLimiter
from worker.inference.scorer import ConversationScorer, ScoringOptions
from worker.observability.health import HealthState, Readiness
from worker.observability.logging import configure_logging
from worker.observability.server import ObservabilityServer
from worker.retry import RetryPolicy
from worker.settings import Settings, load_settings
from worker.store import ScoreStore, async_database_url

log = logging.getLogger("worker.run")
#: Connecting to Kafka at start-up: 12 tries, 1 s doubling to 10 s (about 90 s in all).
_STARTUP_RETRY = RetryPolicy(base_seconds=1.0, max_seconds=10.0, max_attempts=12)


async def _start_kafka(
    client: AIOKafkaConsumer | AIOKafkaProducer, what: str, signals: StopSignals
) -> bool:
    """Start ``client``, retrying; False when a stop signal came first."""
    failures = 0
    while True:
        try:
            await client.start()
            return True
        except KafkaError as exc:
            failures += 1
            log.warning(
                "kafka not reachable yet",
                extra={"client": what, "attempt": failures, "exc_type": type(exc).__name__},
            )
        if _STARTUP_RETRY.gives_up_after(failures):
            raise FatalError(f"kafka {what} could not connect after {failures} attempts")
        # Waiting out a broker outage must not outlast a SIGTERM: Kubernetes would
        # SIGKILL the pod after its grace period, minutes before the attempts run out.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signals.stopping.wait(), timeout=_STARTUP_RETRY.delay(failures))
        if signals.received:
            return False


class StopSignals:
    """SIGTERM/SIGINT as the event loop sees them, from the first moment of serve()."""

    def __init__(self) -> None:
        self.received = 0
        self.stopping = asyncio.Event()
        self._listener: Callable[[], None] | None = None

    def install(self) -> None:
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, self._on_signal)

    def uninstall(self) -> None:
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                running.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        self.received += 1
        self.stopping.set()
        if self._listener is not None:
            self._listener()

    def forward_to(self, listener: Callable[[], None]) -> None:
        """Send this and every later signal to ``listener`` (replaying what came before)."""
        self._listener = listener
        for _ in range(self.received):
            listener()


async def serve(settings: Settings) -> None:
    signals = StopSignals()
    signals.install()
    try:
        await _serve(settings, signals)
    finally:
        signals.uninstall()


async def _serve(settings: Settings, signals: StopSignals) -> None:
    health = HealthState(stale_after_seconds=settings.liveness_stale_seconds)
    limiter = InflightLimiter(settings.max_inflight_requests, settings.max_inflight_tokens)
    consumer = build_consumer(settings)
    producer = build_producer(settings)
    async with (
        ScoreStore.from_settings(settings) as store,
        InferenceClient(ClientConfig.from_settings(settings), limiter) as client,
    ):
        readiness = Readiness(health, store.ping)

        async def alive() -> tuple[bool, str]:
            return health.alive()

        async with ObservabilityServer(
            settings.http_host, settings.http_port, alive=alive, ready=readiness.ready
        ):
            # Stopped even when never started: an unclosed client makes asyncio log an error.
            try:
                try:
                    if signals.received or not await _start_kafka(producer, "producer", signals):
                        return
                    if not await _start_kafka(consumer, "consumer", signals):
                        return
                    await _consume(settings, consumer, producer, store, client, health, signals)
                finally:
                    await consumer.stop()
            finally:
                await producer.stop()


async def _consume(
    settings: Settings,
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    store: ScoreStore,
    client: InferenceClient,
    health: HealthState,
    signals: StopSignals,
) -> None:
    # A gap of up to two probe intervals between successes is the dependency serving
    # events slowly; a longer one may hide an outage (DependencyGate.served_seconds).
    gate = DependencyGate(
        asyncio.get_running_loop().time, healthy_gap_seconds=2 * settings.retry_max_seconds
    )
    processor = RecordProcessor(
        scorer=ConversationScorer(client, ScoringOptions.from_settings(settings)),
        store=store,
        results=ResultPublisher(producer, settings.output_topic),
        dead_letters=DeadLetterQueue(producer, settings.dlq_topic),
        retry=DependencyRetry(
            gate,
            RetryPolicy.per_event(settings),
            budget_seconds=settings.event_retry_budget_seconds,
        ),
        max_event_bytes=settings.max_event_bytes,
    )
    loop = ConsumerLoop(
        consumer,
        processor,
        gate,
        DlqGuard(settings.dlq_guard_window, settings.dlq_guard_ratio),
        health,
        LoopOptions(
            topic=settings.input_topic,
            max_inflight=settings.max_inflight_conversations,
            # Leave time inside the grace period to commit and close the clients.
            shutdown_grace_seconds=max(1.0, settings.shutdown_grace_seconds - 3.0),
            probe_interval_seconds=settings.retry_max_seconds,
        ),
    )
    signals.forward_to(loop.request_stop)
    log.info(
        "memscore running",
        extra={
            "version": __version__,
            "scorer_version": SCORER_VERSION,
            "topic": settings.input_topic,
            "group_id": settings.group_id,
            "model_servers": len(settings.vllm_urls),
        },
    )
    await loop.run()


def run_command() -> int:
    try:
        settings = load_settings()
        async_database_url(settings.require_database_url())
    except FatalError as exc:
        print(f"memscore run: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:  # the message never repeats the URL
        print(f"memscore run: MEMSCORE_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings))
    except DlqGuardTripped as exc:
        log.critical("stopping", extra={"reason": exc.message})
        return 3
    except FatalError as exc:
        log.critical("stopping", extra={"reason": exc.message})
        return 1
    except Exception as exc:
        log.critical("crashed", extra={"exc_type": type(exc).__name__}, exc_info=True)
        return 1
    log.info("memscore stopped cleanly")
    return 0
