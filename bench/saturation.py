"""saturation: does one `memscore run` keep a model server of known capacity busy?

The whole pipeline (bench/pipeline.py): conversations published to the real broker, one
worker process with its default in-flight limits, the synthetic model server simulating a
GPU of `CAPACITY` prompt tokens per second, PostgreSQL. The benchmark samples the server's
/stats while it works and reads, all in the same run:

- backend_utilization: prompt tokens the server processed / (capacity x busy window), where
  the busy window runs from the last /stats sample before the server's first request to the
  first sample after its last one (so idle gaps the worker leaves in between count against
  it, and the ends are rounded outwards);
- worker_cpu_s_per_mtok: the worker's CPU seconds (utime+stime, /proc/PID/stat) from publish
  to the last stored run, per million prompt tokens scored;
- the worker's peak resident memory (VmHWM), end-to-end latency (publish → stored run) and
  per-conversation scoring time, and what a sizing needs: the worker's CPU per request and
  per token, hence the model capacity one worker process can drive before its own core is
  the limit.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from bench.conversations import conversation_event
from bench.pipeline import (
    INPUT_PARTITIONS,
    RunTable,
    Stack,
    Worker,
    cpu_seconds,
    peak_rss_bytes,
    publish,
    running_stack,
)
from bench.report import Result, Target, rounded
from worker.settings import Settings

CAPACITY = 250_000  # simulated prefill, prompt tokens per second
MAX_BATCH_TOKENS = 32_768  # what the server admits into prefill at once; the rest queue
REQUEST_OVERHEAD_MS = 5.0  # fixed latency per request (network, scheduling)
CONVERSATIONS = 100
SAMPLE_SECONDS = 0.02
SAFE_CPU_SHARE = 0.7  # size a replica to use at most this share of its core (latency headroom)

_DEFAULTS = Settings.model_fields
LIMITS = {
    name: int(_DEFAULTS[name].default)
    for name in ("max_inflight_requests", "max_inflight_tokens", "max_inflight_conversations")
}


def events(count: int = CONVERSATIONS, seed: int = 20261124) -> list[dict[str, Any]]:
    """Conversations of 8 to 32 memories and 2k to 8k prompt tokens, 2 to 6 exchanges each."""
    rng = random.Random(seed)
    return [
        conversation_event(
            seed + number,
            memories=rng.randint(8, 32),
            prompt_tokens=rng.randint(2048, 8192),
            turns=rng.randint(2, 6),
        )
        for number in range(count)
    ]


@dataclass
class _Observed:
    samples: list[dict[str, Any]]
    before: dict[str, Any]
    after: dict[str, Any]
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss: int
    published_at: dict[str, float]
    runs: list[dict[str, Any]]


async def _observe(
    stack: Stack, worker: Worker, batch: list[dict[str, Any]], limit_s: float
) -> _Observed:
    table = RunTable(stack.database_url)
    stats_url = f"{stack.model_url}/stats"
    samples: list[dict[str, Any]] = []
    finished = asyncio.Event()
    try:
        async with httpx.AsyncClient() as http:

            async def sample() -> None:
                while not finished.is_set():
                    samples.append((await http.get(stats_url)).json())
                    await asyncio.sleep(SAMPLE_SECONDS)

            before = (await http.get(stats_url)).json()
            cpu_before, server_cpu_before = cpu_seconds(worker.pid), cpu_seconds(stack.model_pid)
            sampler = asyncio.create_task(sample())
            published_at = await publish(stack.bootstrap, batch)
            deadline = time.monotonic() + limit_s
            while await table.count() < len(batch):
                worker.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not all {len(batch)} conversations stored in {limit_s} s")
                await asyncio.sleep(0.25)
            cpu_after, server_cpu_after = cpu_seconds(worker.pid), cpu_seconds(stack.model_pid)
            finished.set()
            await sampler
            after = (await http.get(stats_url)).json()
            samples.append(after)  # the window's end is never past the last sample
        return _Observed(
            samples=samples,
            before=before,
            after=after,
            cpu_seconds=cpu_after - cpu_before,
            server_cpu_seconds=server_cpu_after - server_cpu_before,
            peak_rss=peak_rss_bytes(worker.pid),
            published_at=published_at,
            runs=await table.rows(),
        )
    finally:
        await table.close()


def _busy_window(observed: _Observed) -> float:
    """Seconds from the last idle sample before the first request to the first sample
    after the last one, on the server's clock."""
    start_count = observed.before["requests_served"]
    final_count = observed.after["requests_served"]
    samples = observed.samples
    first_active = next(
        i for i, s in enumerate(samples) if s["requests_served"] > start_count or s["in_flight"] > 0
    )
    start = samples[max(0, first_active - 1)]["uptime_seconds"]
    end = next(
        s["uptime_seconds"]
        for s in samples[first_active:]
        if s["requests_served"] == final_count and s["in_flight"] == 0
    )
    return float(end - start)


def _percentiles(values: list[float], prefix: str) -> dict[str, float]:
    points = np.percentile(values, [50, 95, 99, 100])
    return {
        f"{prefix}_{name}": rounded(float(v), 3)
        for name, v in zip(("p50", "p95", "p99", "max"), points, strict=True)
    }


def run(conversations: int = CONVERSATIONS, limit_s: float = 420.0) -> Result:
    batch = events(conversations)
    flags = {
        "prefill_tokens_per_second": CAPACITY,
        "max_batch_tokens": MAX_BATCH_TOKENS,
        "request_overhead_ms": REQUEST_OVERHEAD_MS,
        "max_model_len": 16_384,
    }
    settings = {f"MEMSCORE_{name.upper()}": str(value) for name, value in LIMITS.items()}
    with running_stack(flags) as stack:
        worker = Worker(stack, settings)
        worker.start()
        try:
            asyncio.run(worker.wait_until_consuming(INPUT_PARTITIONS))
            observed = asyncio.run(_observe(stack, worker, batch, limit_s))
        finally:
            worker.stop()
    return _result(observed, len(batch))


def _result(observed: _Observed, conversations: int) -> Result:
    window = _busy_window(observed)
    tokens = observed.after["prompt_tokens_processed"] - observed.before["prompt_tokens_processed"]
    requests = observed.after["requests_served"] - observed.before["requests_served"]
    prefill_busy = observed.after["prefill_busy_seconds"] - observed.before["prefill_busy_seconds"]
    cpu = observed.cpu_seconds
    per_mtok = cpu / (tokens / 1e6)
    latencies = [run["created"] - observed.published_at[run["event_id"]] for run in observed.runs]
    figures: dict[str, Any] = {
        "conversations": conversations,
        "requests": requests,
        "prompt_tokens": tokens,
        "mean_prompt_tokens_per_request": round(tokens / requests),
        "capacity_tokens_per_second": CAPACITY,
        "max_batch_tokens": MAX_BATCH_TOKENS,
        "request_overhead_ms": REQUEST_OVERHEAD_MS,
        **LIMITS,
        "busy_window_s": rounded(window),
        "backend_utilization": rounded(tokens / (CAPACITY * window), 4),
        "prefill_busy_share": rounded(prefill_busy / window, 4),
        "worker_cpu_s": rounded(cpu),
        "worker_cpu_share_of_one_core": rounded(cpu / window, 3),
        "worker_cpu_s_per_mtok": rounded(per_mtok, 3),
        "worker_cpu_ms_per_request": rounded(cpu / requests * 1000, 3),
        "worker_peak_rss_mib": rounded(observed.peak_rss / 2**20),
        "model_server_cpu_share_of_one_core": rounded(observed.server_cpu_seconds / window, 3),
        **_percentiles(latencies, "e2e_latency_s"),
        **_percentiles([run["duration_seconds"] for run in observed.runs], "scoring_s"),
        "replica_max_prompt_tokens_per_second": rounded(1e6 / per_mtok, 3),
        "replica_max_requests_per_second": rounded(requests / cpu, 3),
        "servers_per_replica_at_70pct_cpu": rounded(SAFE_CPU_SHARE * 1e6 / per_mtok / CAPACITY, 3),
    }
    return Result(
        "saturation",
        figures,
        [
            Target("backend_utilization", ">=", 0.95),
            Target("worker_cpu_s_per_mtok", "<=", 2.0),
        ],
    )
