"""Run the model server as a child process, for tests, the demo and the benchmarks.

`running_model_server(...)` is the one-liner; `ModelServerProcess` also stops, kills and
restarts the server on the same port, which is how tests simulate a model server outage.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from devstack.model_server.cli import READY_PREFIX

FlagValue = str | int | float | bool | None | Sequence[str | int | float]
_REPO_ROOT = Path(__file__).resolve().parents[2]
# vllm: a first run installs vLLM (~5 min) before its ~100 s start-up.
_STARTUP_TIMEOUT_S = {"smollm2": 240.0, "synthetic": 30.0, "vllm": 1800.0}


def flag_args(flags: Mapping[str, FlagValue]) -> list[str]:
    """`prefill_tokens_per_second=1e5` -> `--prefill-tokens-per-second 100000.0`.

    True gives a bare flag, False and None leave it out, a list repeats it (`outage=["1:2"]`).
    """
    args: list[str] = []
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            args.append(flag)
        elif isinstance(value, str | int | float):
            args += [flag, str(value)]
        else:
            for item in value:
                args += [flag, str(item)]
    return args


class ModelServerProcess:
    """One `python -m devstack model-server` child; start() again after stop() to restart it.

    `flags` are the CLI flags as keywords: `{"prefill_tokens_per_second": 5e4, "outage": ["0:3"]}`.
    """

    def __init__(
        self,
        backend: str = "synthetic",
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout_s: float | None = None,
        flags: Mapping[str, FlagValue] | None = None,
    ) -> None:
        self.backend = backend
        self.host = host
        self.port = port
        self._flags = flag_args(flags or {})
        self._startup_timeout_s = startup_timeout_s or _STARTUP_TIMEOUT_S.get(backend, 60.0)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, without `/v1`."""
        if self.port is None:
            raise RuntimeError("the model server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child's process id (benchmarks read its CPU time), None before start()."""
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the child and return its base URL once it accepts connections."""
        if self.running:
            raise RuntimeError("the model server is already running")
        self._close_log()
        # The child's stdout and stderr, read back for the ready line and on errors; it outlives
        # this method and is closed by close().
        self._log = tempfile.TemporaryFile()  # noqa: SIM115
        command = [sys.executable, "-m", "devstack", "model-server", "--backend", self.backend]
        command += ["--host", self.host, "--port", str(self.port or 0), *self._flags]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=_REPO_ROOT,
        )
        try:
            self.port = self._wait_until_ready()
        except BaseException:
            self.kill()
            raise
        return self.base_url

    def _wait_until_ready(self) -> int:
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                if line.startswith(READY_PREFIX):
                    url = line.removeprefix(READY_PREFIX).split()[0]
                    return int(url.rsplit(":", 1)[1])
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"model server exited during start-up:\n{self.output()[-4000:]}")
            time.sleep(0.05)
        waited = f"{self._startup_timeout_s:.0f} s"
        raise TimeoutError(f"model server not ready after {waited}:\n{self.output()[-4000:]}")

    def output(self) -> str:
        """Everything the child printed so far (it never prints request text)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM, wait for the graceful drain, then SIGKILL; the exit code (None if not run)."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: a crash, with no drain; the port refuses connections until start()."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        self._close_log()

    def __enter__(self) -> ModelServerProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def running_model_server(
    backend: str = "synthetic", port: int | None = None, **flags: FlagValue
) -> Iterator[str]:
    """A model server child for the duration of the block; yields its base URL (no `/v1`)."""
    with ModelServerProcess(backend, port=port, flags=flags) as server:
        yield server.base_url
