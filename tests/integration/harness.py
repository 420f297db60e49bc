"""Driving a real `memscore run` process against the devstack parts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy.ext.asyncio import create_async_engine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WorkerProcess:
    """`memscore run` as production runs it: a process configured by environment."""

    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    http_port: int = field(default_factory=free_port)

    def start(self) -> None:
        env = {**os.environ, **self.env, "MEMSCORE_HTTP_PORT": str(self.http_port)}
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=log
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def worker_env(
    *,
    bootstrap: str,
    database_url: str,
    model_url: str,
    topics: Any,
    group_id: str,
    **extra: str,
) -> dict[str, str]:
    env = {
        "MEMSCORE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MEMSCORE_INPUT_TOPIC": topics.input,
        "MEMSCORE_OUTPUT_TOPIC": topics.output,
        "MEMSCORE_DLQ_TOPIC": topics.dlq,
        "MEMSCORE_GROUP_ID": group_id,
        "MEMSCORE_KAFKA_PRODUCER_IDEMPOTENCE": "false",  # Tansu has no InitProducerId
        "MEMSCORE_DATABASE_URL": database_url,
        "MEMSCORE_VLLM_URLS": model_url,
        "MEMSCORE_MODEL": "synthetic",
        "MEMSCORE_RETRY_BASE_SECONDS": "0.1",
        "MEMSCORE_RETRY_MAX_SECONDS": "1",
        "MEMSCORE_BREAKER_RESET_SECONDS": "1",
        "MEMSCORE_SHUTDOWN_GRACE_SECONDS": "20",
        "MEMSCORE_LOG_FORMAT": "json",
        # Tansu holds a JoinGroup for half the session timeout (devstack.broker.FAST_GROUP_JOIN).
        "MEMSCORE_KAFKA_SESSION_TIMEOUT_SECONDS": "2",
        "MEMSCORE_KAFKA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
    }
    env.update(extra)
    return env


async def produce(
    bootstrap: str,
    topic: str,
    events: list[dict[str, Any] | bytes],
    *,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            value = event if isinstance(event, bytes) else json.dumps(event).encode()
            key = None if isinstance(event, bytes) else event["conversation_id"].encode()
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def read_topic(
    bootstrap: str, topic: str, expected: int, wait_seconds: float = 60
) -> list[Any]:
    """Every record of ``topic`` once ``expected`` have arrived (or the timeout passed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        deadline = time.monotonic() + wait_seconds
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


async def committed_offsets(bootstrap: str, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed offsets (OffsetFetch without joining the group).

    Not the admin client's list_consumer_group_offsets: Tansu's answer to that
    request version does not decode in aiokafka.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        offsets = {p: await consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        await consumer.stop()
    return {p: o for p, o in offsets.items() if o is not None}


async def scalar(database_url: str, sql: str) -> Any:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(sa.text(sql))).scalar()
    finally:
        await engine.dispose()


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, worker: WorkerProcess
) -> None:
    """Poll ``check`` until true; on timeout fail with the worker's log tail."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        if worker.proc is not None and worker.proc.poll() is not None:
            break
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; worker log tail:\n{worker.logs()[-4000:]}")
