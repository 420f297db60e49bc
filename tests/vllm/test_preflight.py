"""What the vLLM devstack checks before it installs or starts anything (fast; no vLLM)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.vllm_cpu import NotEnoughDisk, UnsupportedMachine, VLLMCache, prepare
from devstack.vllm_cpu.preflight import check_free_disk, check_machine, cpu_flags

GIB = 1024**3
CPUINFO_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n"
CPUINFO_NO_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx\n"


def test_cpu_flags_are_read_from_the_first_flags_line() -> None:
    assert cpu_flags(CPUINFO_AVX2) == {"fpu", "sse2", "avx", "avx2", "fma"}


def test_x86_64_linux_with_avx2_can_run_vllm() -> None:
    check_machine("linux", "x86_64", CPUINFO_AVX2)


@pytest.mark.parametrize(
    ("system", "machine", "cpuinfo", "reason"),
    [
        ("darwin", "x86_64", CPUINFO_AVX2, "needs Linux"),
        ("linux", "aarch64", CPUINFO_AVX2, "needs an x86-64 CPU"),
        ("linux", "x86_64", CPUINFO_NO_AVX2, "needs a CPU with AVX2"),
        ("linux", "x86_64", "", "needs a CPU with AVX2"),
    ],
)
def test_other_machines_are_refused_in_one_line(
    system: str, machine: str, cpuinfo: str, reason: str
) -> None:
    with pytest.raises(UnsupportedMachine, match=reason) as info:
        check_machine(system, machine, cpuinfo)
    assert "\n" not in str(info.value)


def test_too_little_disk_is_refused_before_installing(tmp_path: Path) -> None:
    with pytest.raises(NotEnoughDisk, match="needs 6 GB free") as info:
        check_free_disk(tmp_path, free_bytes=2 * GIB)
    assert "MEMSCORE_CACHE_DIR" in str(info.value)


def test_enough_disk_passes(tmp_path: Path) -> None:
    check_free_disk(tmp_path, free_bytes=7 * GIB)


def test_a_prepared_cache_is_used_as_it_is(tmp_path: Path) -> None:
    cache = VLLMCache(tmp_path / "vllm")
    for part in (cache.venv, cache.checkpoint):
        part.mkdir(parents=True)
        (part / ".memscore-complete").write_text("done\n")
    prepared = prepare(cache, progress=pytest.fail)  # any progress would mean a build
    assert (prepared.python, prepared.checkpoint) == (cache.python, cache.checkpoint)


def test_the_cache_lives_under_memscore_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMSCORE_CACHE_DIR", str(tmp_path))
    assert VLLMCache.default().root == tmp_path / "vllm-0.32.0"


def test_stand_in_fault_flags_are_refused_with_the_vllm_backend() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "model-server",
            "--backend",
            "vllm",
            "--error-rate",
            "0.5",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--error-rate only apply to the stand-in backends" in result.stderr
