"""`memscore score FILE`: score one event against a live model server, offline from Kafka.

Exit codes: 0 scored; 1 the server failed or refused (its message is shown);
2 bad input or settings (one line on stderr).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path

from worker.errors import FatalError, MemscoreError, PoisonEventError
from worker.events import ConversationEvent, decode_event
from worker.inference.client import ClientConfig, InferenceClient
from worker.inference.endpoint import endpoints
from worker.inference.limiter import InflightLimiter
from worker.inference.scorer import ConversationScorer, ScoringOptions
from worker.scoring import ConversationScore
from worker.settings import Settings, load_settings

# An interactive command should fail in seconds, not after the daemon's patience.
_CLI_MAX_ATTEMPTS = 3
_CLI_MAX_RETRY_SECONDS = 5.0


def _fail(code: int, message: str) -> int:
    print(f"memscore score: {message}", file=sys.stderr)
    return code


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read()
    return Path(file).read_bytes()


def client_config(settings: Settings, urls: list[str]) -> ClientConfig:
    """The daemon's client config, with the retries of an interactive command."""
    daemon = ClientConfig.from_settings(settings)
    return dataclasses.replace(
        daemon,
        base_urls=urls,
        retry=dataclasses.replace(
            daemon.retry,
            max_attempts=min(settings.vllm_max_attempts, _CLI_MAX_ATTEMPTS),
            max_seconds=min(daemon.retry.max_seconds, _CLI_MAX_RETRY_SECONDS),
        ),
    )


async def _score(
    event: ConversationEvent, settings: Settings, urls: list[str]
) -> ConversationScore:
    config = client_config(settings, urls)
    limiter = InflightLimiter(settings.max_inflight_requests, settings.max_inflight_tokens)
    async with InferenceClient(config, limiter) as client:
        scorer = ConversationScorer(
            client,
            ScoringOptions.from_settings(settings),
        )
        return await scorer.score(event)


def render_table(result: ConversationScore) -> str:
    score = result.score
    lines = [
        f"conversation {result.conversation_id}  model {result.model}  "
        f"{len(score.memory_keys)} memories x {len(score.response_entry_indices)} responses  "
        f"{result.requests} requests  {result.prompt_tokens} prompt tokens  "
        f"{result.duration_seconds:.1f} s  metric {score.metric}  strategy {score.strategy}"
        + ("  (capped: the token cap cut it short)" if score.capped else ""),
        "",
        "Memories by importance (nats lost over all responses without the memory)",
        f"  {'rank':>4}  {'importance':>10}  key",
    ]
    ranked = sorted(score.memory_weights, key=lambda pair: pair[1], reverse=True)
    kinds = dict(zip(score.memory_keys, score.row_kinds, strict=True))
    for rank, (key, weight) in enumerate(ranked, start=1):
        kind = "" if kinds[key] == "exact" else f"  ({kinds[key]})"
        lines.append(f"  {rank:>4}  {weight:>10.3f}  {key}{kind}")
    lines += ["", "Responses (dependence on memory, and the memories each one used)"]
    for entry, tokens, dependence in zip(
        score.response_entry_indices,
        score.response_token_counts,
        score.response_scores,
        strict=True,
    ):
        top = score.important_memories_for_entry(entry)
        used = ", ".join(f"{key} {value:.2f}" for key, value in top[:5]) or "none"
        lines.append(f"  entry {entry:>3}  {tokens:>4} tokens  {dependence:>8.3f}  {used}")
    return "\n".join(lines)


def score_command(
    file: str,
    *,
    vllm_urls: list[str] | None,
    model: str | None,
    fmt: str,
    strategy: str | None = None,
    max_prompt_tokens: int | None = None,
) -> int:
    overrides: dict[str, object] = {}
    if strategy is not None:
        overrides["strategy"] = strategy
    if max_prompt_tokens is not None:
        overrides["max_prompt_tokens_per_conversation"] = max_prompt_tokens
    try:
        settings = load_settings(**overrides)
        payload = _read(file)
        event = decode_event(payload, max_bytes=settings.max_event_bytes)
    except OSError as exc:
        return _fail(2, f"cannot read {file}: {exc.strerror or exc}")
    except (PoisonEventError, FatalError) as exc:
        return _fail(2, exc.message)
    if not event.memory_indices:
        return _fail(2, "the event has no memory entries: nothing to attribute")
    if not event.response_indices:
        return _fail(2, "the event has no assistant responses: nothing to score")
    if model:
        event = event.model_copy(update={"model": model})
    urls = [u.rstrip("/") for u in vllm_urls] if vllm_urls else settings.vllm_urls
    try:
        endpoints(urls, failure_threshold=1, reset_seconds=1.0)  # the client's own check
    except ValueError as exc:  # never quotes the URL: it may hold credentials
        return _fail(2, f"--vllm-url: {exc}")
    try:
        result = asyncio.run(_score(event, settings, urls))
    except MemscoreError as exc:  # server down, refused, or answered something unusable
        return _fail(1, exc.message)
    if fmt == "json":
        print(
            json.dumps(
                {
                    "conversation_id": result.conversation_id,
                    **result.score.to_dict(),
                    "requests": result.requests,
                    "prompt_tokens": result.prompt_tokens,
                }
            )
        )
    else:
        print(render_table(result))
    return 0
