"""A stand-in for vLLM's OpenAI-compatible server: the endpoints memscore uses, in vLLM's shapes.

Backends: `smollm2` (a real 135M-parameter model on the CPU) and `synthetic` (deterministic,
with a simulated GPU cost model and fault injection, for load tests). Run it with
`python -m devstack model-server`, or from Python with `running_model_server(...)`.
"""

from devstack.model_server.process import ModelServerProcess, running_model_server

__all__ = ["ModelServerProcess", "running_model_server"]
