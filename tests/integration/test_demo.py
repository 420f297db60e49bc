"""`python -m devstack demo` runs green (on the synthetic backend, to stay quick)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.samples import DEMO_CONVERSATIONS


@pytest.mark.slow
def test_demo_scores_every_sample_and_draws_heatmaps(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack",
            "demo",
            "--backend",
            "synthetic",
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for conversation in DEMO_CONVERSATIONS:
        assert f"=== {conversation['conversation_id']}" in result.stdout
        assert (tmp_path / f"{conversation['conversation_id']}.png").stat().st_size > 1000
    assert "worker stopped (exit 0)" in result.stdout
