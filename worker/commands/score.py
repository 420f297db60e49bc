"""`memscore score` (being built: see the issue tracker)."""

from __future__ import annotations

import sys


def score_command(file: str, *, vllm_urls: list[str] | None, model: str | None, fmt: str) -> int:
    print("memscore score: not available in this build yet", file=sys.stderr)
    return 2
