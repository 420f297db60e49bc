"""One real vLLM OpenAI-compatible server as a child process group: start, await, stop.

The server runs in a session of its own (its engine core is a second process in the same
group), so stopping signals the whole group: SIGTERM, a grace period, then SIGKILL. A
foreground command can also ask for it to die with its parent (`die_with_parent`), so a
killed devstack leaves no 2 GB engine behind. `start()` again after `stop()` restarts it on
the same port: how tests make an outage.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from devstack.vllm_cpu.errors import StartupFailed, StartupTimeout
from devstack.vllm_cpu.prepare import Prepared

# ~60 s on 2 idle cores (eager mode, see below); a busy CI runner is slower.
DEFAULT_STARTUP_TIMEOUT_S = 600.0
_STOP_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1

# Fixed for the devstack: the model is small, and the KV cache (GiB) is what vLLM would
# otherwise size from the machine's memory.
_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_CPU_KVCACHE_SPACE": "2",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TQDM_DISABLE": "1",
}


@dataclass(frozen=True)
class ServeOptions:
    """What the server offers; `served_names` are the model names requests may use."""

    served_names: Sequence[str] = ("smollm2",)
    max_model_len: int = 8192
    max_logprobs: int = 20
    api_key: str | None = None


def server_command(prepared: Prepared, host: str, port: int, options: ServeOptions) -> list[str]:
    command = [
        str(prepared.python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(prepared.checkpoint),
        "--served-model-name",
        *options.served_names,
        "--dtype",
        "float32",
        "--max-model-len",
        str(options.max_model_len),
        "--max-logprobs",
        str(options.max_logprobs),
        # Prompt-logprob requests skip the prefix cache anyway; with it off, nothing can
        # make a scoring request read stale cached rows (see README, "How it works").
        "--no-enable-prefix-caching",
        # Request logging at DEBUG would print prompts: conversations never reach a log.
        "--no-enable-log-requests",
        # No torch.compile: on 2 cores it adds 2-4 min to every start, because vLLM 0.32 on
        # the CPU cannot load its own compile cache back ("'function' object has no attribute
        # 'finalize_loading'") and compiles again each time. Eager mode starts in ~60 s; its
        # prompt logprobs differ from the compiled model's by at most 5e-5 nats a token.
        "--enforce-eager",
        "--host",
        host,
        "--port",
        str(port),
    ]
    if options.api_key:
        command += ["--api-key", options.api_key]
    return command


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux: no parent-death signal
        return None
    return prctl


# Looked up here, not in the child: between fork and exec the child should make one call.
_PRCTL = _load_prctl()


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class VLLMServer:
    """Use as a context manager, or start()/stop() it yourself."""

    def __init__(
        self,
        prepared: Prepared,
        port: int,
        *,
        host: str = "127.0.0.1",
        options: ServeOptions | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        die_with_parent: bool = False,
    ) -> None:
        """`die_with_parent`: SIGKILL the server when the thread that started it ends (Linux's
        parent-death signal follows the thread, not the process): only for a process's main
        thread, never for a server started from a worker thread (`asyncio.to_thread`)."""
        self.prepared = prepared
        self.host = host
        self.port = port
        self.options = options or ServeOptions()
        self.startup_timeout_s = startup_timeout_s
        self.die_with_parent = die_with_parent
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_path = prepared.logs / f"server-{port}.log"

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, without `/v1`."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, abort: Callable[[], bool] = lambda: False) -> str:
        """Start vLLM and return its base URL once /health answers 200.

        Raises StartupFailed (it exited, or `abort()` turned true) or StartupTimeout (still
        not healthy); either way nothing is left running.
        """
        if self.running:
            raise RuntimeError("the vLLM server is already running")
        self._close_log()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appended to: a restart (an outage in a test) keeps what the server said before it.
        self._log = self._log_path.open("ab")
        self._log.write(f"--- devstack: starting vLLM at {time.ctime()} ---\n".encode())
        self._log.flush()
        started = time.monotonic()
        self._process = subprocess.Popen(
            server_command(self.prepared, self.host, self.port, self.options),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **_ENV},
            start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        try:
            self._wait_until_healthy(started + self.startup_timeout_s, abort)
        except BaseException:
            self.kill()
            raise
        self.startup_seconds = time.monotonic() - started
        return self.base_url

    def _wait_until_healthy(self, deadline: float, abort: Callable[[], bool]) -> None:
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if abort():
                    raise StartupFailed("vLLM start-up abandoned: asked to stop")
                if self._process is not None and self._process.poll() is not None:
                    raise StartupFailed(
                        f"vLLM exited with status {self._process.returncode} during start-up; "
                        f"see {self._log_path}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get(f"{self.base_url}/health").status_code == 200:
                        return
                time.sleep(0.5)
        raise StartupTimeout(
            f"vLLM did not answer /health within {self.startup_timeout_s:.0f} s; "
            f"see {self._log_path}"
        )

    def output(self) -> str:
        """What the server printed so far (its log file)."""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, grace_s: float = _STOP_GRACE_S) -> int | None:
        """SIGTERM to the group, wait up to `grace_s`, then SIGKILL; the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
        # The engine core may outlive the API server that led the group.
        _signal_group(process.pid, signal.SIGKILL)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, with no drain."""
        process = self._process
        if process is not None:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        self.stop()
        self._close_log()

    def __enter__(self) -> VLLMServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
