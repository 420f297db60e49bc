"""Can this machine run vllm-cpu? Checked before anything is installed or started.

Pure functions of what they are handed (machine name, /proc/cpuinfo text, free bytes), so
tests can feed them other machines; `check_this_machine` reads this one.
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

from devstack.vllm_cpu.errors import NotEnoughDisk, UnsupportedMachine

# The install is ~3.5 GB (torch alone is ~1 GB unpacked) and pip unpacks wheels next to
# it; the float32 checkpoint adds 0.5 GB.
REQUIRED_FREE_BYTES = 6 * 1024**3
_X86_64 = frozenset({"x86_64", "amd64"})


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The first processor's `flags` line of /proc/cpuinfo, as a set."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def check_machine(system: str, machine: str, cpuinfo: str) -> None:
    """Raise UnsupportedMachine unless this is x86-64 Linux with AVX2."""
    if system != "linux":
        raise UnsupportedMachine(f"real vLLM (vllm-cpu) needs Linux; this is {system}")
    if machine.lower() not in _X86_64:
        raise UnsupportedMachine(f"real vLLM (vllm-cpu) needs an x86-64 CPU; this is {machine}")
    if "avx2" not in cpu_flags(cpuinfo):
        raise UnsupportedMachine(
            "real vLLM (vllm-cpu) needs a CPU with AVX2; /proc/cpuinfo lists no avx2 flag"
        )


def check_free_disk(where: Path, free_bytes: int, required: int = REQUIRED_FREE_BYTES) -> None:
    """Raise NotEnoughDisk when `free_bytes` (at `where`) is below `required`."""
    if free_bytes < required:
        raise NotEnoughDisk(
            f"installing real vLLM needs {required / 1024**3:.0f} GB free under {where}; "
            f"{free_bytes / 1024**3:.1f} GB are (set MEMSCORE_CACHE_DIR to a roomier place)"
        )


def check_this_machine() -> None:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    check_machine(sys.platform, platform.machine(), cpuinfo)


def check_disk_at(where: Path, required: int = REQUIRED_FREE_BYTES) -> None:
    """Free space where the cache lives (its nearest existing ancestor)."""
    existing = where
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    check_free_disk(where, shutil.disk_usage(existing).free, required)
