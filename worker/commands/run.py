"""`memscore run` (being built: see the issue tracker)."""

from __future__ import annotations

import sys


def run_command() -> int:
    print("memscore run: not available in this build yet", file=sys.stderr)
    return 2
