"""Fixtures of the reliability suite: workers, model servers and databases that tests break."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.model_server import ModelServerProcess
from devstack.ports import free_port
from tests.integration.harness import WorkerProcess, worker_env

WorkerFactory = Callable[..., WorkerProcess]
ModelServerFactory = Callable[..., ModelServerProcess]


@pytest.fixture
def migrated(database_url: str) -> str:
    from worker.store import upgrade_schema

    upgrade_schema(database_url)
    return database_url


@pytest.fixture
def make_worker(
    tmp_path: Path,
    kafka_bootstrap: str,
    migrated: str,
    synthetic_model_url: str,
    topic_names: Any,
    group_id: str,
) -> Iterator[WorkerFactory]:
    """`make_worker(model_url=..., bootstrap=..., database_url=..., MEMSCORE_X="1")`.

    Defaults: the session broker, this test's migrated database, topics and group, and
    the session synthetic model server. Every worker made is killed at teardown.
    """
    workers: list[WorkerProcess] = []

    def make(
        *,
        model_url: str = synthetic_model_url,
        bootstrap: str = kafka_bootstrap,
        database_url: str = migrated,
        topics: Any = topic_names,
        **extra: str,
    ) -> WorkerProcess:
        env = worker_env(
            bootstrap=bootstrap,
            database_url=database_url,
            model_url=model_url,
            topics=topics,
            group_id=group_id,
            **extra,
        )
        worker = WorkerProcess(env=env, log_path=tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.kill()


@pytest.fixture
def make_model_server() -> Iterator[ModelServerFactory]:
    """`make_model_server(**flags)`: a synthetic server of the test's own, on a fixed port.

    The port is chosen up front so that start() after stop() or kill() comes back on the
    same address, as a restarted pod behind a Service would.
    """
    servers: list[ModelServerProcess] = []

    def make(**flags: Any) -> ModelServerProcess:
        server = ModelServerProcess("synthetic", port=free_port("127.0.0.1"), flags=flags)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.kill()
        server.close()
