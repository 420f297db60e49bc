"""The whole pipeline on this machine, for the saturation benchmark.

The devstack broker (Tansu), an embedded PostgreSQL, the synthetic model server with a
simulated GPU, and `memscore run` as a subprocess configured by environment, exactly as
production runs it. Also what the benchmark reads off them: the worker's CPU time and
peak memory from /proc, the model server's /stats, and the stored runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.broker import Broker, create_topics
from devstack.model_server import ModelServerProcess
from devstack.model_server.process import FlagValue
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from worker.store import upgrade_schema

INPUT_PARTITIONS = 4
_REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stack:
    bootstrap: str
    database_url: str
    model_url: str
    model_pid: int
    workdir: Path


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: a process's peak resident set size so far, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@contextmanager
def running_stack(server_flags: Mapping[str, FlagValue]) -> Iterator[Stack]:
    """Broker with fresh topics, a migrated database and a model server, torn down after."""
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="memscore-bench-"))
        stack.callback(shutil.rmtree, workdir, True)
        broker = stack.enter_context(Broker(log_path=workdir / "tansu.log"))
        topics = {"conversation-closed": INPUT_PARTITIONS, "memory-scored": 1}
        asyncio.run(create_topics(broker.bootstrap_servers, {**topics, "dlq": 1}))
        postgres = stack.enter_context(EmbeddedPostgres(workdir / "pgdata", durable=False))
        upgrade_schema(postgres.sqlalchemy_url)
        server = stack.enter_context(ModelServerProcess("synthetic", flags=server_flags))
        assert server.pid is not None
        yield Stack(
            broker.bootstrap_servers, postgres.sqlalchemy_url, server.base_url, server.pid, workdir
        )


class Worker:
    """`memscore run` in a child process, configured by environment as in production."""

    def __init__(self, stack: Stack, settings: Mapping[str, str]) -> None:
        self.http_port = free_port()
        self.log_path = stack.workdir / "worker.log"
        self.env = {
            **os.environ,
            "MEMSCORE_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap,
            "MEMSCORE_INPUT_TOPIC": "conversation-closed",
            "MEMSCORE_OUTPUT_TOPIC": "memory-scored",
            "MEMSCORE_DLQ_TOPIC": "dlq",
            "MEMSCORE_GROUP_ID": "memscore-bench",
            "MEMSCORE_KAFKA_PRODUCER_IDEMPOTENCE": "false",  # Tansu has no InitProducerId
            # Tansu holds a JoinGroup for half the session timeout: keep the join short.
            "MEMSCORE_KAFKA_SESSION_TIMEOUT_SECONDS": "2",
            "MEMSCORE_KAFKA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "MEMSCORE_DATABASE_URL": stack.database_url,
            "MEMSCORE_VLLM_URLS": stack.model_url,
            "MEMSCORE_MODEL": "synthetic",
            "MEMSCORE_HTTP_PORT": str(self.http_port),
            "MEMSCORE_LOG_FORMAT": "json",
            **settings,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=_REPO_ROOT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the worker exited; its log ends:\n{self.log_tail()}")

    async def wait_until_consuming(self, partitions: int, within: float = 60.0) -> None:
        """Until /metrics says the worker holds every partition of the input topic."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    text = (await http.get(f"http://127.0.0.1:{self.http_port}/metrics")).text
                except httpx.HTTPError:
                    text = ""
                for line in text.splitlines():
                    name, _, value = line.partition(" ")
                    if name == "memscore_partitions_assigned" and float(value) >= partitions:
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"the worker did not join the group; its log ends:\n{self.log_tail()}")

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


async def publish(bootstrap: str, events: list[dict[str, Any]]) -> dict[str, float]:
    """Send the events; their publish times (epoch seconds, the records' timestamps)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        sent = [
            await producer.send(
                "conversation-closed",
                json.dumps(event).encode(),
                key=event["conversation_id"].encode(),
            )
            for event in events
        ]
        metadata = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return {e["event_id"]: m.timestamp / 1000 for e, m in zip(events, metadata, strict=True)}


async def server_stats(http: httpx.AsyncClient, model_url: str) -> dict[str, Any]:
    stats: dict[str, Any] = (await http.get(f"{model_url}/stats")).json()
    return stats


class RunTable:
    """The scoring_runs table, read over one connection pool for the whole benchmark."""

    def __init__(self, database_url: str) -> None:
        self._engine = create_async_engine(database_url, pool_size=1)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.execute(sa.text("SELECT count(*) FROM scoring_runs"))
            return int(count.scalar_one())

    async def rows(self) -> list[dict[str, Any]]:
        """event_id, created (epoch seconds), duration_seconds, prompt_tokens of every run."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.text(
                    "SELECT event_id, extract(epoch FROM created_at)::float8 AS created, "
                    "duration_seconds, prompt_tokens, request_count FROM scoring_runs"
                )
            )
            return [dict(row._mapping) for row in rows]

    async def close(self) -> None:
        await self._engine.dispose()
