"""`python -m devstack broker | postgres | model-server | demo | publish | vllm-prepare | ...`."""

from __future__ import annotations

import importlib
import sys

_COMMANDS = {
    "broker": ("devstack.broker", "run the Tansu Kafka-protocol broker on 127.0.0.1"),
    "postgres": ("devstack.postgres", "run an embedded PostgreSQL server"),
    "model-server": ("devstack.model_server.cli", "run the vLLM-compatible model server"),
    "demo": ("devstack.demo", "the whole pipeline end to end with sample conversations"),
    "publish": ("devstack.publish", "publish event files to the input topic"),
    "vllm-prepare": ("devstack.vllm_cpu.cli", "install real vLLM and its checkpoint (cached)"),
    "capture-vllm": ("devstack.vllm_cpu.capture", "record real vLLM answers as test fixtures"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in _COMMANDS:
        lines = [f"  {name:<13} {text}" for name, (_, text) in _COMMANDS.items()]
        print("usage: python -m devstack COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    module = importlib.import_module(_COMMANDS[argv[0]][0])
    result: int = module.main(argv[1:])
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
