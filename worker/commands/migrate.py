"""`memscore migrate` (being built: see the issue tracker)."""

from __future__ import annotations

import sys


def migrate_command() -> int:
    print("memscore migrate: not available in this build yet", file=sys.stderr)
    return 2
