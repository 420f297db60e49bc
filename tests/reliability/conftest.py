"""Fixtures of the reliability suite: workers, model servers and databases that tests break."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.model_server import ModelServerProcess
from devstack.ports import free_port

ModelServerFactory = Callable[..., ModelServerProcess]


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
