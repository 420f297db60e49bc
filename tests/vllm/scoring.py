"""Helpers of the vLLM tier: `memscore score` as a subprocess, and vLLM's own counters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt


def memscore_score(
    tmp_path: Path, event: dict[str, Any], url: str, *, model: str = "smollm2", **env: str
) -> subprocess.CompletedProcess[str]:
    """`memscore score EVENT --format json` against `url`; MEMSCORE_* from `env` only."""
    path = tmp_path / f"{event['event_id']}.json"
    path.write_text(json.dumps(event))
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMSCORE_")}
    command = [sys.executable, "-m", "worker", "score", str(path), "--vllm-url", url]
    return subprocess.run(
        [*command, "--model", model, "--format", "json"],
        capture_output=True,
        text=True,
        env={**clean, **env},
        check=False,
        timeout=300,
    )


def scored_matrix(
    tmp_path: Path, event: dict[str, Any], url: str, **env: str
) -> tuple[dict[str, Any], npt.NDArray[np.float64]]:
    result = memscore_score(tmp_path, event, url, **env)
    assert result.returncode == 0, result.stderr
    body: dict[str, Any] = json.loads(result.stdout)
    return body, np.array(body["matrix"], dtype=np.float64)


def prompt_tokens_served(url: str) -> float:
    """vLLM's own count of prompt tokens it has processed (`vllm:prompt_tokens_total`)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vllm:prompt_tokens_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total
