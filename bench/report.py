"""A benchmark's result: its figures, the targets they are judged by, and how it is shown.

Every judged figure is a ratio of two things measured in the same run (or a per-unit cost
measured against a count), so a noisy shared machine moves both sides together.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class Target:
    """``figure op limit``, e.g. ratio_to_json_decode <= 2.0."""

    figure: str
    op: Literal["<=", ">="]
    limit: float

    def met(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        return value <= self.limit if self.op == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.figure} {self.op} {self.limit:g}"


@dataclass
class Result:
    """One benchmark's figures (JSON-ready values) and targets over some of them."""

    benchmark: str
    figures: dict[str, Any]
    targets: list[Target] = field(default_factory=list)

    def missed(self) -> list[Target]:
        return [t for t in self.targets if not t.met(float(self.figures[t.figure]))]

    def as_json(self) -> str:
        verdicts = {
            str(t): {"value": self.figures[t.figure], "met": t.met(float(self.figures[t.figure]))}
            for t in self.targets
        }
        record = {"benchmark": self.benchmark, **self.figures, "targets": verdicts}
        record["targets_met"] = not self.missed()
        return json.dumps(record, separators=(",", ":"), default=_plain)

    def table(self) -> str:
        lines = [f"== {self.benchmark}"]
        for name, value in self.figures.items():
            if isinstance(value, list | dict):
                continue  # detail rows are printed by the benchmark's own table
            lines.append(f"  {name:<38} {_show(value)}")
        for target in self.targets:
            mark = "met   " if target.met(float(self.figures[target.figure])) else "MISSED"
            lines.append(f"  [{mark}] {target}  (got {_show(self.figures[target.figure])})")
        return "\n".join(lines)


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _show(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:,.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def rounded(value: float, digits: int = 4) -> float:
    """A figure rounded to ``digits`` significant digits, for compact JSON."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import msgspec
    import orjson

    return {
        "nproc": _cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "platform": sys.platform,
    }


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
