"""Score one conversation: a baseline request, then the rounds of ablations a strategy plans.

The strategy (worker/scoring/strategies) decides which memories each request leaves out
and turns the answers into the MemoryScore; this module only sends. The requests of a
round go out concurrently, bounded by the shared InflightLimiter inside the client;
each response is reduced to its assistant-response tokens as soon as it arrives, so
memory use does not grow with N x prompt length. Messages after the last response are
never sent: nothing scored can depend on them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from worker import SCORER_VERSION
from worker.errors import MemscoreError, PoisonEventError
from worker.events.schema import ConversationEvent, MemoryEntry
from worker.inference.client import PromptScores
from worker.observability import metrics
from worker.scoring import (
    ConversationScore,
    MemoryScore,
    MessagePattern,
    Metric,
    ResponseTokens,
    locate_responses,
)
from worker.scoring.strategies import (
    Ablation,
    Conversation,
    LeaveOneOut,
    Strategy,
    event_seed,
    strategy_from_settings,
)
from worker.settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# A cheap upper-ish estimate of tokens per character, used only to reserve the
# token budget for the baseline before the server has told us the real count.
_CHARS_PER_TOKEN = 3
_TOKENS_PER_MESSAGE = 8
_UNLIMITED = 1 << 62


class PromptScorer(Protocol):
    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores: ...


@dataclass(frozen=True)
class ScoringOptions:
    default_model: str
    metric: Metric = "drop"
    noise_floor: float = 0.0
    strategy: Strategy = field(default_factory=LeaveOneOut)
    #: Prompt tokens one conversation may spend, baseline included (None: no cap).
    max_prompt_tokens: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringOptions:
        return cls(
            default_model=settings.model,
            metric=settings.metric,
            noise_floor=settings.noise_floor,
            strategy=strategy_from_settings(settings),
            max_prompt_tokens=settings.max_prompt_tokens_per_conversation,
        )


@dataclass(frozen=True)
class _Message:
    entry_index: int | None  # None for the system prompt and the context message
    role: str
    content: str
    pattern: MessagePattern


def _plan(event: ConversationEvent) -> list[_Message]:
    # The event says which entries are responses (assistant messages); a memory is
    # never one, whatever role it is sent with.
    responses = set(event.response_indices)
    last = max(responses)
    messages = [
        _Message(
            None,
            "system",
            event.system_prompt,
            MessagePattern.for_message("system", "", is_response=False),
        )
    ]
    if event.context_message is not None:
        messages.append(
            _Message(
                None,
                "user",
                event.context_message,
                MessagePattern.for_message("user", event.context_message, is_response=False),
            )
        )
    for index, entry in enumerate(event.entries[: last + 1]):  # nothing after the last response
        pattern = MessagePattern.for_message(
            entry.role, entry.content, is_response=index in responses
        )
        messages.append(_Message(index, entry.role, entry.content, pattern))
    return messages


class ConversationScorer:
    def __init__(self, client: PromptScorer, options: ScoringOptions) -> None:
        self.client = client
        self.options = options

    async def score(self, event: ConversationEvent) -> ConversationScore:
        started = time.perf_counter()
        model = event.model or self.options.default_model
        memory_indices = event.memory_indices
        response_indices = event.response_indices
        keys = tuple(entry.key for entry in event.entries if isinstance(entry, MemoryEntry))
        if not memory_indices or not response_indices:
            return ConversationScore(
                event_id=event.event_id,
                event_source=event.source,
                conversation_id=event.conversation_id,
                model=model,
                score=MemoryScore.empty(
                    keys, tuple(memory_indices), tuple(response_indices), metric=self.options.metric
                ),
                requests=0,
                prompt_tokens=0,
                response_tokens=0,
                duration_seconds=time.perf_counter() - started,
                scorer_version=SCORER_VERSION,
            )
        plan = _plan(event)
        estimate = sum(
            len(m.content) for m in plan
        ) // _CHARS_PER_TOKEN + _TOKENS_PER_MESSAGE * len(plan)
        baseline, baseline_scores = await self._request(model, plan, frozenset(), estimate)
        length = baseline_scores.prompt_tokens
        cap = self.options.max_prompt_tokens
        conversation = Conversation(
            memory_keys=keys,
            memory_entry_indices=tuple(memory_indices),
            response_entry_indices=tuple(response_indices),
            metric=self.options.metric,
            noise_floor=self.options.noise_floor,
            seed=event_seed(event.event_id, event.source),
            request_budget=None if cap is None else max(0, cap - length) // max(1, length),
        )
        strategy = self.options.strategy
        answers: dict[Ablation, ResponseTokens] = {frozenset(): baseline}
        requests, prompt_tokens = 1, length
        done = 0
        while True:
            # Every ablation is at most as long as the baseline: budgeting each at the
            # baseline's length keeps the conversation under the cap whatever is left out.
            budget = _UNLIMITED if cap is None else (cap - prompt_tokens) // length
            ablations = strategy.plan(conversation, answers, max(0, budget))
            if not ablations:
                break

            async def ablation(left_out: Ablation) -> tuple[ResponseTokens, int]:
                nonlocal done
                entries = frozenset(memory_indices[p] for p in left_out)
                tokens, scores = await self._request(model, plan, entries, length)
                done += 1
                metrics.ABLATIONS_COMPLETED.inc()
                log.debug(
                    "ablation scored",
                    extra={"event_id": event.event_id, "left_out": len(left_out), "done": done},
                )
                return tokens, scores.prompt_tokens

            results = await _gather_first_error([ablation(a) for a in ablations])
            for left_out, (tokens, sent) in zip(ablations, results, strict=True):
                answers[left_out] = tokens
                prompt_tokens += sent
            requests += len(ablations)
        score = strategy.score(conversation, answers)
        metrics.STRATEGY_REQUESTS.labels(score.strategy).inc(requests)
        metrics.STRATEGY_PROMPT_TOKENS.labels(score.strategy).inc(prompt_tokens)
        for kind in score.row_kinds:
            metrics.MEMORY_ROWS.labels(score.strategy, kind).inc()
        return ConversationScore(
            event_id=event.event_id,
            event_source=event.source,
            conversation_id=event.conversation_id,
            model=model,
            score=score,
            requests=requests,
            prompt_tokens=prompt_tokens,
            response_tokens=sum(baseline.token_counts),
            duration_seconds=time.perf_counter() - started,
            scorer_version=SCORER_VERSION,
            baseline_prompt_tokens=length,
        )

    async def _request(
        self, model: str, plan: Sequence[_Message], drop: frozenset[int], estimate: int
    ) -> tuple[ResponseTokens, PromptScores]:
        sent = [m for m in plan if m.entry_index is None or m.entry_index not in drop]
        scores = await self.client.prompt_logprobs(
            model=model,
            messages=[{"role": m.role, "content": m.content} for m in sent],
            estimated_tokens=estimate,
        )
        stream = scores.tokens
        spans = locate_responses(stream.texts, [m.pattern for m in sent])
        return (
            ResponseTokens(
                token_ids=[stream.token_ids[s] for s in spans],
                logprobs=[stream.logprobs[s] for s in spans],
            ),
            scores,
        )


async def _gather_first_error(
    coros: Sequence[Coroutine[Any, Any, _T]],
) -> list[_T]:
    """Run all; on failure cancel the rest and raise the most telling error.

    A poison error (the event is bad) wins over a transient one, so the event is
    DLQ'd instead of retried forever.
    """
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, MemscoreError)]
        poison = [e for e in errors if isinstance(e, PoisonEventError)]
        if poison:
            raise poison[0] from None
        raise
