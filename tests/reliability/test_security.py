"""Secrets and users' words stay out of logs, metrics and probes; SQL is never built from text.

Two daemon runs feed the tests (each a module-scoped scenario, run once):
- secrets: a worker with a password in its database URL (the database is down, so it
  retries and logs), a vLLM API key the model server really demands, and a second
  worker with a SASL password the broker refuses, plus one whose URL is malformed;
- privacy: a worker that scores, retries injected 500/503s, parks poison and
  too-long events on the DLQ, with distinctive markers in every memory and message.

Non-root and read-only root filesystem in the container are asserted by
tests/deploy/test_k8s_workloads.py, not here.
"""

from __future__ import annotations

import ast
import asyncio
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from devstack.broker import create_topics
from devstack.model_server import ModelServerProcess
from devstack.ports import free_port
from devstack.postgres import create_database, drop_database, unique_database_name
from devstack.samples import generated_event
from tests.fixtures.broker import TopicNames
from tests.integration.harness import WorkerProcess, committed_offsets, worker_env
from tests.reliability.support import (
    exit_code,
    outcomes,
    read_all,
    rows,
    stored_runs,
    tail,
)
from worker.errors import FatalError
from worker.settings import Settings, load_settings

pytestmark = pytest.mark.slow

DB_PASSWORD = "db-Pa55word-SECRET-e41f"
VLLM_KEY = "sk-vllm-KEY-SECRET-90ab"
SASL_PASSWORD = "sasl-Pa55-SECRET-77cd"
SECRETS = {"database password": DB_PASSWORD, "vLLM key": VLLM_KEY, "SASL password": SASL_PASSWORD}

MEMORY_MARKER = "PRIVATE-MEMORY-TEXT-3c9d"
MESSAGE_MARKER = "PRIVATE-MESSAGE-TEXT-8f21"
ANSWER_MARKER = "PRIVATE-ANSWER-TEXT-b7e0"
MARKERS = (MEMORY_MARKER, MESSAGE_MARKER, ANSWER_MARKER)
HOSTILE_KEYS = (
    "'; DROP TABLE scoring_runs; --",
    "Robert'); DELETE FROM memory_importance WHERE ('1'='1",
    "%(key)s :key $1 ? \\x00 \" ' ; --",
)
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Observed:
    """What a scenario left behind for the tests to inspect."""

    logs: dict[str, str]
    exposed: dict[str, str]  # /metrics, /healthz and /readyz bodies, by worker and path
    codes: dict[str, int | None]
    extra: dict[str, Any]


def _started(name: str, env: dict[str, str], directory: Path) -> WorkerProcess:
    worker = WorkerProcess(env=env, log_path=directory / f"{name}.log")
    worker.start()
    return worker


async def _until(worker: WorkerProcess, needle: str, count: int = 1, within: float = 60) -> None:
    for _ in range(int(within * 10)):
        if worker.logs().count(needle) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never logged {needle!r} x{count}\n{tail(worker)}")


async def _exposed(worker: WorkerProcess) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        return {path: (await http.get(path)).text for path in ("/metrics", "/healthz", "/readyz")}


async def _stop(worker: WorkerProcess) -> int | None:
    worker.signal(signal.SIGTERM)
    code = await exit_code(worker, within=30)
    worker.kill()
    return code


async def _topics(bootstrap: str) -> TopicNames:
    suffix = uuid4().hex[:8]
    topics = TopicNames(f"closed-{suffix}", f"scored-{suffix}", f"dlq-{suffix}")
    await create_topics(bootstrap, {topics.input: 3, topics.output: 1, topics.dlq: 1})
    return topics


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value=value, key=uuid4().bytes)
    finally:
        await producer.stop()


# --- secrets --------------------------------------------------------------------------


async def _secrets_scenario(bootstrap: str, model_url: str, directory: Path) -> Observed:
    dead_port = free_port("127.0.0.1")
    topics = await _topics(bootstrap)
    common = {
        "bootstrap": bootstrap,
        "model_url": model_url,
        "topics": topics,
        "group_id": f"memscore-secrets-{uuid4().hex[:8]}",
        "MEMSCORE_VLLM_API_KEY": VLLM_KEY,
        "MEMSCORE_SHUTDOWN_GRACE_SECONDS": "4",
    }
    db_down = f"postgresql://memscore:{DB_PASSWORD}@127.0.0.1:{dead_port}/memscore"
    scoring = _started("db-down", worker_env(database_url=db_down, **common), directory)
    sasl_env = worker_env(
        database_url=db_down,
        MEMSCORE_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        MEMSCORE_SASL_MECHANISM="PLAIN",
        MEMSCORE_SASL_USERNAME="memscore",
        MEMSCORE_SASL_PASSWORD=SASL_PASSWORD,
        **common,
    )
    sasl = _started("sasl-refused", sasl_env, directory)
    malformed = f"postgresql://memscore:{DB_PASSWORD}@db.internal:notaport/memscore"
    bad_url = _started("bad-url", worker_env(database_url=malformed, **common), directory)
    event = generated_event(1300, memories=2)
    await _produce(bootstrap, topics.input, [json.dumps(event).encode(), b"{not json"])
    try:
        # Scored with the key, then the store fails again and again; the poison is parked.
        await _until(scoring, '"event sent to the DLQ"')
        await _until(scoring, '"dependency": "postgres"', count=4)
        await _until(sasl, '"kafka not reachable yet"', count=2)
        exposed = {
            f"{name} {path}": body
            for name, worker in (("db-down", scoring), ("sasl-refused", sasl))
            for path, body in (await _exposed(worker)).items()
        }
        codes = {
            "db-down": await _stop(scoring),
            "sasl-refused": await _stop(sasl),
            "bad-url": await exit_code(bad_url, within=30),
        }
    finally:
        for worker in (scoring, sasl, bad_url):
            worker.kill()
    logs = {w.log_path.stem: w.logs() for w in (scoring, sasl, bad_url)}
    return Observed(logs=logs, exposed=exposed, codes=codes, extra={})


@pytest.fixture(scope="module")
def secrets_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Observed:
    with ModelServerProcess("synthetic", flags={"api_key": VLLM_KEY}) as server:
        return asyncio.run(
            _secrets_scenario(kafka_bootstrap, server.base_url, tmp_path_factory.mktemp("secrets"))
        )


def test_the_secrets_scenario_used_every_secret(secrets_run: Observed) -> None:
    # The key was accepted (scoring reached the store), the password was tried, SASL was
    # attempted, and the malformed URL was refused as a bad setting (exit 2): the leak
    # checks mean something.
    assert secrets_run.codes == {"db-down": 0, "sasl-refused": 0, "bad-url": 2}, "\n".join(
        text[-2000:] for text in secrets_run.logs.values()
    )


def test_secrets_never_appear_in_worker_logs(secrets_run: Observed) -> None:
    leaks = [
        (secret, log)
        for secret, value in SECRETS.items()
        for log, text in secrets_run.logs.items()
        if value in text
    ]
    assert leaks == []


def test_secrets_never_appear_in_metrics_or_probes(secrets_run: Observed) -> None:
    leaks = [
        (secret, where)
        for secret, value in SECRETS.items()
        for where, text in secrets_run.exposed.items()
        if value in text
    ]
    assert leaks == []


def test_settings_repr_and_validation_errors_hide_every_secret() -> None:
    values = {
        "database_url": f"postgresql://memscore:{DB_PASSWORD}@db/memscore",
        "vllm_api_key": VLLM_KEY,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "memscore",
        "sasl_password": SASL_PASSWORD,
    }
    settings = Settings(**values)  # type: ignore[arg-type]
    with pytest.raises(FatalError) as invalid:
        load_settings(**values, http_port="not-a-port")
    shown = {
        "repr": repr(settings),
        "str": str(settings),
        "model_dump_json": settings.model_dump_json(),
        "validation error": str(invalid.value),
    }
    leaks = [(s, where) for s, v in SECRETS.items() for where, text in shown.items() if v in text]
    assert leaks == []


# --- privacy and SQL --------------------------------------------------------------------


def _private_event(seed: int, **options: Any) -> dict[str, Any]:
    event = generated_event(seed, memories=3, **options)
    for entry in event["entries"]:
        if entry["type"] == "memory":
            entry["content"] = f"{MEMORY_MARKER} {entry['content']}"
        elif entry["role"] == "user":
            entry["content"] = f"{MESSAGE_MARKER} {entry['content']}"
        else:
            entry["content"] = f"{ANSWER_MARKER} {entry['content']}"
    event["system_prompt"] += f" {MESSAGE_MARKER}"
    return event


async def _privacy_scenario(
    bootstrap: str, database_url: str, model_url: str, directory: Path
) -> Observed:
    from worker.store import upgrade_schema

    await asyncio.to_thread(upgrade_schema, database_url)
    topics = await _topics(bootstrap)
    group_id = f"memscore-privacy-{uuid4().hex[:8]}"
    good = [_private_event(1400 + s) for s in range(6)]
    for event, key in zip(good, HOSTILE_KEYS, strict=False):
        event["entries"][0]["key"] = key
    bad_role = _private_event(1450)
    bad_role["entries"][4]["role"] = MESSAGE_MARKER
    bad_tag = _private_event(1451)
    bad_tag["entries"][0]["type"] = MEMORY_MARKER
    too_long = _private_event(1452, words_per_memory=1200)
    poison = [bad_role, bad_tag, too_long]
    values = [json.dumps(e).encode() for e in [*good, *poison]]
    await _produce(bootstrap, topics.input, values)
    env = worker_env(
        bootstrap=bootstrap,
        database_url=database_url,
        model_url=model_url,
        topics=topics,
        group_id=group_id,
        MEMSCORE_LOG_LEVEL="DEBUG",  # the most a worker ever says
    )
    worker = _started("privacy", env, directory)
    try:
        for _ in range(600):
            committed = await committed_offsets(bootstrap, group_id, topics.input)
            if sum(committed.values()) >= len(values):
                break
            await asyncio.sleep(0.1)
        exposed = {f"privacy {p}": body for p, body in (await _exposed(worker)).items()}
        codes = {"privacy": await _stop(worker)}
    finally:
        worker.kill()
    dead = await read_all(bootstrap, topics.dlq)
    keys = await rows(
        database_url,
        "SELECT memory_key FROM memory_scores UNION ALL SELECT memory_key FROM memory_importance",
    )
    tables = await rows(
        database_url,
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_name IN ('scoring_runs', 'memory_scores', 'memory_importance')",
    )
    return Observed(
        logs={"privacy": worker.logs()},
        exposed=exposed,
        codes=codes,
        extra={
            "outcomes": dict(outcomes(worker)),
            "stored": await stored_runs(database_url),
            "dlq_headers": [
                {k: v.decode(errors="replace") for k, v in r.headers if k.startswith("memscore.")}
                for r in dead
            ],
            "stored_keys": [key for (key,) in keys],
            "tables": tables[0][0],
        },
    )


@pytest.fixture(scope="module")
def privacy_run(
    kafka_bootstrap: str,
    _database_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Observed]:
    name = unique_database_name("privacy")
    database_url = asyncio.run(create_database(_database_server.url, name))
    # 500/503 on a fifth of the requests, and a context short enough for one event to overflow.
    flags = {"error_rate": 0.2, "fault_seed": 11, "max_model_len": 2048}
    try:
        with ModelServerProcess("synthetic", flags=flags) as server:
            yield asyncio.run(
                _privacy_scenario(
                    kafka_bootstrap,
                    database_url,
                    server.base_url,
                    tmp_path_factory.mktemp("privacy"),
                )
            )
    finally:
        asyncio.run(drop_database(_database_server.url, name))


def test_the_privacy_scenario_scored_retried_and_parked(privacy_run: Observed) -> None:
    classes = sorted(h["memscore.error.class"] for h in privacy_run.extra["dlq_headers"])
    figures = {
        "exit": privacy_run.codes["privacy"],
        "stored": privacy_run.extra["stored"],
        "dlq": classes,
        "retried": '"model request failed, will retry"' in privacy_run.logs["privacy"],
    }
    expected = {
        "exit": 0,
        "stored": 6,
        "dlq": ["context_length", "schema", "schema"],
        "retried": True,
    }
    assert figures == expected, privacy_run.logs["privacy"][-3000:]


def test_no_memory_or_message_text_in_the_worker_log(privacy_run: Observed) -> None:
    log = privacy_run.logs["privacy"]
    assert [marker for marker in MARKERS if marker in log] == []


def test_no_memory_or_message_text_in_dlq_reasons_or_metrics(privacy_run: Observed) -> None:
    shown = json.dumps(privacy_run.extra["dlq_headers"]) + json.dumps(privacy_run.exposed)
    assert [marker for marker in MARKERS if marker in shown] == []


def test_hostile_memory_keys_are_stored_as_plain_data(privacy_run: Observed) -> None:
    stored = privacy_run.extra["stored_keys"]
    # Each key once in memory_scores and once in the running totals; every table still there.
    found = {key: stored.count(key) for key in HOSTILE_KEYS}
    assert (found, privacy_run.extra["tables"]) == (dict.fromkeys(HOSTILE_KEYS, 2), 3)


_SQL_CALLS = frozenset({"text", "execute", "executemany", "exec_driver_sql", "literal_column"})


def _built_from_strings(node: ast.expr) -> bool:
    """An f-string, `%` formatting, `+` concatenation or `.format()`: SQL made of text."""
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod | ast.Add):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
    )


def test_sql_is_never_built_from_strings() -> None:
    offenders = []
    for path in sorted([*(REPO / "worker").rglob("*.py"), *(REPO / "migrations").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in _SQL_CALLS and _built_from_strings(node.args[0]):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []
