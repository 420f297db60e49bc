"""client_overhead: the worker's own CPU cost per vLLM response, against a plain JSON decode.

For one conversation (N memories, ~8k prompt tokens, several answers, a <think> block) the
N+1 response bodies are rendered in advance. The timed part is exactly what the worker does
with them: `ConversationScorer.score` with a client that answers from those bodies through
`parse_prompt_logprobs`, as `InferenceClient` does — parse, locate the responses, slice
their tokens, build the divergence matrix; each round compiles its patterns afresh, as each
conversation in production is new. The reference is the fastest generic JSON decode of the
same bytes in the same process: msgspec or orjson, with Python's cyclic GC on or off,
whichever is fastest (the worker runs as in production, GC on). Rounds interleave them, and
each side's best round counts: the least disturbed measurement of its intrinsic cost.
"""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from bench.conversations import BodyRenderer, conversation_event, encode_event
from bench.report import Result, Target, rounded
from worker.events import ConversationEvent, decode_event
from worker.inference.client import PromptScores
from worker.inference.response import parse_prompt_logprobs
from worker.inference.scorer import ConversationScorer, ScoringOptions

MODEL = "synthetic"
JSON_DECODERS: dict[str, Callable[[bytes], Any]] = {
    "msgspec": msgspec.json.decode,
    "orjson": orjson.loads,
}


def _key(messages: list[dict[str, str]]) -> tuple[str, ...]:
    # An ablation leaves one memory out, so the contents tell the requests apart.
    return tuple(message["content"] for message in messages)


class _Recorder:
    """A client that renders each request's body and keeps it (the untimed set-up run)."""

    def __init__(self, renderer: BodyRenderer) -> None:
        self.renderer = renderer
        self.bodies: dict[tuple[str, ...], bytes] = {}

    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores:
        body = await self.renderer.render(model, messages)
        self.bodies[_key(messages)] = body
        tokens = parse_prompt_logprobs(body)
        return PromptScores(tokens=tokens, prompt_tokens=len(tokens), endpoint="recorder")


class CannedServer:
    """A client answering from bodies rendered in advance: only the worker's work remains."""

    def __init__(self, bodies: dict[tuple[str, ...], bytes]) -> None:
        self._bodies = bodies

    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores:
        tokens = parse_prompt_logprobs(self._bodies[_key(messages)])
        return PromptScores(tokens=tokens, prompt_tokens=len(tokens), endpoint="canned")


@dataclass(frozen=True)
class Workload:
    """One conversation and the bodies its N+1 requests get back."""

    event: ConversationEvent
    bodies: list[bytes]
    positions: int  # prompt_logprobs entries over all bodies
    baseline_tokens: int
    scorer: ConversationScorer


def prepare(*, prompt_tokens: int, memories: int, seed: int = 7, turns: int = 6) -> Workload:
    raw = conversation_event(seed, memories=memories, prompt_tokens=prompt_tokens, turns=turns)
    event = decode_event(encode_event(raw), max_bytes=1 << 30)
    recorder = _Recorder(BodyRenderer())
    options = ScoringOptions(default_model=MODEL)
    asyncio.run(ConversationScorer(recorder, options).score(event))
    bodies = list(recorder.bodies.values())
    positions = sum(len(parse_prompt_logprobs(body)) for body in bodies)
    baseline = len(parse_prompt_logprobs(bodies[0]))
    scorer = ConversationScorer(CannedServer(recorder.bodies), options)
    return Workload(event, bodies, positions, baseline, scorer)


def _cpu_seconds(action: Callable[[], object], *, collect_garbage: bool = True) -> float:
    gc.collect()
    # Every conversation in production is new: its patterns are compiled afresh, never
    # found in the re module's cache from an earlier round.
    re.purge()
    if not collect_garbage:
        gc.disable()
    try:
        started = time.process_time()
        action()
        return time.process_time() - started
    finally:
        gc.enable()


def measure(workload: Workload, rounds: int) -> dict[str, float]:
    """Best CPU seconds over ``rounds``: each JSON decoder (with the cyclic GC on and off:
    the reference is the fastest decode there is), the worker, and its parser alone."""
    loop = asyncio.new_event_loop()
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(seconds, best.get(name, float("inf")))

    def each_body(decode: Callable[[bytes], object]) -> Callable[[], None]:
        def decode_all() -> None:
            for body in workload.bodies:
                decode(body)  # and drop it, as the worker drops each parsed body

        return decode_all

    def score() -> None:
        loop.run_until_complete(workload.scorer.score(workload.event))

    try:
        for _ in range(rounds):
            for name, decode in JSON_DECODERS.items():
                keep(name, _cpu_seconds(each_body(decode)))
                keep(f"{name}, GC off", _cpu_seconds(each_body(decode), collect_garbage=False))
            keep("worker", _cpu_seconds(score))
            keep("parse", _cpu_seconds(each_body(parse_prompt_logprobs)))
    finally:
        loop.close()
    return best


def run(*, prompt_tokens: int = 8192, memories: int = 8, rounds: int = 31) -> Result:
    workload = prepare(prompt_tokens=prompt_tokens, memories=memories)
    best = measure(workload, rounds)
    decoder = min((name for name in best if name not in ("worker", "parse")), key=best.__getitem__)
    requests = len(workload.bodies)
    per_response_ms = 1000 / requests
    figures: dict[str, Any] = {
        "prompt_tokens": workload.baseline_tokens,
        "memories": memories,
        "responses_per_prompt": len(workload.event.response_indices),
        "requests": requests,
        "positions": workload.positions,
        "body_bytes_per_response": round(sum(map(len, workload.bodies)) / requests),
        "json_decoder": decoder,
        "json_decode_ms_per_response": rounded(best[decoder] * per_response_ms),
        "worker_ms_per_response": rounded(best["worker"] * per_response_ms),
        "parse_ms_per_response": rounded(best["parse"] * per_response_ms),
        "json_positions_per_second": rounded(workload.positions / best[decoder]),
        "positions_per_second": rounded(workload.positions / best["worker"]),
        "ratio_to_json_decode": rounded(best["worker"] / best[decoder], 3),
        "rounds": rounds,
    }
    return Result(
        "client_overhead",
        figures,
        [
            Target("ratio_to_json_decode", "<=", 2.0),
            Target("positions_per_second", ">=", 1_500_000),
        ],
    )
