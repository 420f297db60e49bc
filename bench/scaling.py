"""scaling: how the worker's CPU and memory per conversation grow with length and memories.

For prompt lengths L and memory counts N, one conversation each (4 exchanges, a <think>
block). CPU: the conversation's N+1 bodies are rendered in advance and the worker's own
work on them is timed as in client_overhead (parse, locate, divergences; best of a few
rounds), interleaved with orjson's decode of the same bodies, cyclic GC off (the fastest
reference there). Memory: the conversation is scored again by the worker's real
InferenceClient, over HTTP, against the synthetic model server (another process), with
IN_FLIGHT requests at a time; the figure is tracemalloc's peak, what scoring allocated
beyond what was there before. Both must grow at most linearly in N·L: the log-log slope
over the whole grid, and along each line of it (each N across the lengths, each L across
the memory counts), where a quadratic part of the worker would show as a slope well above
1. The steepest single step between neighbouring points is shown too, next to the plain
JSON decode's own figures over the same bodies: past ~16k tokens a decode's cost per byte
grows on this machine (allocator and caches, not the worker). A least-squares fit of
CPU = a·requests + b·positions gives the worker's own cost per request and per token.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import math
import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bench import client_overhead
from bench.report import Result, Target, rounded
from devstack.model_server import running_model_server
from worker.events import ConversationEvent
from worker.inference.client import ClientConfig, InferenceClient
from worker.inference.limiter import InflightLimiter
from worker.inference.scorer import ConversationScorer, ScoringOptions

LENGTHS = (1024, 4096, 16384, 32768)
MEMORIES = (4, 16, 64)
TURNS = 4
IN_FLIGHT = 4  # requests; no token bound, so memory shows what each one holds
MIN_ROUNDS = 3
MIN_CPU_SECONDS = 0.5  # more rounds for small points, until this much CPU was measured (<= 7)


@dataclass(frozen=True)
class Point:
    length: int  # the conversation's nominal prompt tokens
    memories: int
    requests: int
    positions: int
    cpu_seconds: float
    json_seconds: float
    peak_bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "L": self.length,
            "N": self.memories,
            "requests": self.requests,
            "positions": self.positions,
            "cpu_ms": rounded(self.cpu_seconds * 1000),
            "ns_per_position": rounded(self.cpu_seconds / self.positions * 1e9),
            "ratio_to_json_decode": rounded(self.cpu_seconds / self.json_seconds, 3),
            "peak_mib": rounded(self.peak_bytes / 2**20),
        }


def _cpu_seconds(action: Callable[[], object], *, collect_garbage: bool = True) -> float:
    re.purge()
    gc.collect()
    if not collect_garbage:
        gc.disable()
    try:
        started = time.process_time()
        action()
        return time.process_time() - started
    finally:
        gc.enable()


def _cpu_point(length: int, memories: int) -> tuple[Point, ConversationEvent]:
    workload = client_overhead.prepare(
        prompt_tokens=length, memories=memories, turns=TURNS, seed=length + memories
    )
    loop = asyncio.new_event_loop()

    def score() -> None:
        loop.run_until_complete(workload.scorer.score(workload.event))

    def decode_all() -> None:
        for body in workload.bodies:
            orjson.loads(body)

    # Interleaved, so that both sides see the same moments of a busy machine.
    worker: list[float] = []
    reference: list[float] = []
    try:
        while len(worker) < MIN_ROUNDS or (sum(worker) < MIN_CPU_SECONDS and len(worker) < 7):
            worker.append(_cpu_seconds(score))
            reference.append(_cpu_seconds(decode_all, collect_garbage=False))
    finally:
        loop.close()
    point = Point(
        length=length,
        memories=memories,
        requests=len(workload.bodies),
        positions=workload.positions,
        cpu_seconds=min(worker),
        json_seconds=min(reference),
    )
    return point, workload.event


async def _peak_memory(url: str, events: list[ConversationEvent]) -> list[int]:
    peaks = []
    limiter = InflightLimiter(IN_FLIGHT, 1 << 40)
    async with InferenceClient(ClientConfig(base_urls=[url]), limiter) as client:
        scorer = ConversationScorer(client, ScoringOptions(default_model="synthetic"))
        await scorer.score(events[0])  # connections and first-use caches, outside the count
        for event in events:
            re.purge()
            gc.collect()
            tracemalloc.start()
            try:
                await scorer.score(event)
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
    return peaks


def measure_grid(lengths: tuple[int, ...], memories: tuple[int, ...]) -> list[Point]:
    measured = [_cpu_point(length, count) for length in lengths for count in memories]
    with running_model_server("synthetic", max_model_len=max(lengths) * 2) as url:
        peaks = asyncio.run(_peak_memory(url, [event for _, event in measured]))
    return [
        Point(**{**vars(point), "peak_bytes": peak})
        for (point, _), peak in zip(measured, peaks, strict=True)
    ]


def _slope(x: list[float], y: list[float]) -> float:
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def _lines(points: list[Point]) -> list[list[Point]]:
    """The grid's lines: each N across the lengths, each L across the memory counts."""
    by_key = {(p.length, p.memories): p for p in points}
    lengths = sorted({p.length for p in points})
    counts = sorted({p.memories for p in points})
    lines = [[by_key[length, n] for length in lengths] for n in counts]
    return lines + [[by_key[length, n] for n in counts] for length in lengths]


def _steps(points: list[Point], value: Callable[[Point], float]) -> list[float]:
    """Log-log slopes of ``value`` against N·L between neighbouring grid points: a quadratic
    stretch anywhere shows as a slope near 2."""
    return [
        math.log(value(b) / value(a)) / math.log(b.positions / a.positions)
        for line in _lines(points)
        for a, b in itertools.pairwise(line)
    ]


def _line_slopes(points: list[Point], value: Callable[[Point], float]) -> list[float]:
    """The log-log slope of ``value`` against N·L along each line of the grid."""
    return [
        _slope([float(p.positions) for p in line], [value(p) for p in line])
        for line in _lines(points)
    ]


def fit_costs(points: list[Point]) -> tuple[float, float]:
    """CPU seconds = a·requests + b·positions, least squares: (a, b)."""
    design = np.array([[p.requests, p.positions] for p in points], dtype=np.float64)
    cpu = np.array([p.cpu_seconds for p in points])
    weights = 1 / cpu  # relative errors: the small points count as much as the large ones
    (a, b), *_ = np.linalg.lstsq(design * weights[:, None], cpu * weights, rcond=None)
    return float(a), float(b)


def run(lengths: tuple[int, ...] = LENGTHS, memories: tuple[int, ...] = MEMORIES) -> Result:
    points = measure_grid(lengths, memories)
    work = [float(p.positions) for p in points]
    per_request, per_token = fit_costs(points)
    figures: dict[str, Any] = {
        "points": [p.as_dict() for p in points],
        "cpu_loglog_exponent": rounded(_slope(work, [p.cpu_seconds for p in points]), 3),
        "cpu_steepest_line_exponent": rounded(
            max(_line_slopes(points, lambda p: p.cpu_seconds)), 3
        ),
        "cpu_steepest_step_exponent": rounded(max(_steps(points, lambda p: p.cpu_seconds)), 3),
        "json_loglog_exponent": rounded(_slope(work, [p.json_seconds for p in points]), 3),
        "json_steepest_line_exponent": rounded(
            max(_line_slopes(points, lambda p: p.json_seconds)), 3
        ),
        "json_steepest_step_exponent": rounded(max(_steps(points, lambda p: p.json_seconds)), 3),
        "memory_loglog_exponent": rounded(_slope(work, [float(p.peak_bytes) for p in points]), 3),
        "memory_steepest_step_exponent": rounded(
            max(_steps(points, lambda p: float(p.peak_bytes))), 3
        ),
        "worst_ratio_to_json_decode": max(p.as_dict()["ratio_to_json_decode"] for p in points),
        "cpu_us_per_request": rounded(per_request * 1e6),
        "cpu_ns_per_token": rounded(per_token * 1e9),
        "in_flight_requests": IN_FLIGHT,
    }
    return Result(
        "scaling",
        figures,
        [
            Target("cpu_loglog_exponent", "<=", 1.1),
            Target("cpu_steepest_line_exponent", "<=", 1.25),
            Target("memory_loglog_exponent", "<=", 1.1),
            Target("memory_steepest_step_exponent", "<=", 1.25),
        ],
    )


def table(result: Result) -> str:
    lines = ["      L     N  requests  positions    cpu ms  ns/pos  x json  peak MiB"]
    for p in result.figures["points"]:
        lines.append(
            f"  {p['L']:>5} {p['N']:>5} {p['requests']:>9} {p['positions']:>10,} "
            f"{p['cpu_ms']:>9.1f} {p['ns_per_position']:>7.0f} "
            f"{p['ratio_to_json_decode']:>7.2f} {p['peak_mib']:>9.2f}"
        )
    return "\n".join(lines)
