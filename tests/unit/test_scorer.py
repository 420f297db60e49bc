"""ConversationScorer: one baseline plus one ablation per memory, orchestrated.

The model is a small in-memory fake (a unit test of pure orchestration): it renders the
messages with ChatML, tokenizes them with vllm_shapes, and gives a word's token logprob
-0.1 when the word appeared in an earlier message and -5.0 otherwise, so an answer
"depends" on exactly the messages that hold its words.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.unit import vllm_shapes
from worker.consumer.processor import _observe as observe_scored
from worker.errors import ContextLengthError, InferenceUnavailable, MemscoreError
from worker.events import ConversationEvent
from worker.inference.client import PromptScores
from worker.inference.response import parse_prompt_logprobs
from worker.inference.scorer import ConversationScorer, ScoringOptions
from worker.observability import metrics
from worker.scoring.strategies import Auto, Hierarchical, Hybrid, Surrogate

KNOWN, UNKNOWN, OTHER = -0.1, -5.0, -0.5
LOST = 4.9  # what one word's token loses when its source is left out: KNOWN - UNKNOWN


def memory(key: str, content: str, **fields: str) -> dict[str, str]:
    return {"type": "memory", "key": key, "content": content, **fields}


def message(role: str, content: str) -> dict[str, str]:
    return {"type": "message", "role": role, "content": content}


def event_of(*entries: dict[str, str], **fields: Any) -> ConversationEvent:
    return ConversationEvent.model_validate(
        {
            "event_id": "evt-1",
            "conversation_id": "conv-1",
            "system_prompt": "You are a helpful assistant.",
            "entries": list(entries),
            **fields,
        }
    )


EVENT = event_of(
    memory("pet", "The user's dog is named Biscuit."),  # 0
    memory("home", "The user lives in Lisbon."),  # 1
    message("user", "What is my dog called?"),  # 2
    message("assistant", "Biscuit! Your dog is called Biscuit."),  # 3: "Biscuit" twice
    memory("food", "The user likes pizza."),  # 4: after the first response
    message("user", "What do I like to eat?"),  # 5
    message("assistant", "You like pizza."),  # 6: "pizza" once
)
CONTENT_KEYS = {"The user's dog is named Biscuit.": "pet", "The user lives in Lisbon.": "home"}
CONTENT_KEYS["The user likes pizza."] = "food"


def word_logprobs(texts: list[str]) -> list[float]:
    seen_before: set[str] = set()  # words of the messages already finished
    current: set[str] = set()
    logprobs = [0.0]
    for text in texts[1:]:
        if text == "<|im_start|>":
            seen_before |= current
            current = set()
        word = text.strip().lower()
        if word.replace("'", "").isalnum():
            logprobs.append(KNOWN if word in seen_before else UNKNOWN)
            current.add(word)
        else:
            logprobs.append(OTHER)
    return logprobs


class FakeModel:
    """A PromptScorer that records what it was sent and can be told to fail or drift."""

    def __init__(
        self,
        *,
        failures: dict[str, MemscoreError] | None = None,
        ablation_drift: float = 0.0,
        hang_without: frozenset[str] = frozenset(),
    ) -> None:
        self.requests: list[list[dict[str, str]]] = []
        self.models: list[str] = []
        self.estimates: list[int] = []
        self.prompt_tokens: list[int] = []
        self.cancelled: list[str] = []
        self.failures = failures or {}
        self.ablation_drift = ablation_drift  # server noise: every token of an ablation moves
        self.hang_without = hang_without  # ablations that never answer until cancelled
        self.hanging = 0
        self.all_hanging = asyncio.Event()

    def missing(self, messages: list[dict[str, str]]) -> list[str]:
        """Keys of the memories the baseline sent and this request did not."""
        sent = {m["content"] for m in messages}
        baseline = self.requests[0] if self.requests else messages
        return [
            CONTENT_KEYS.get(m["content"], m["content"])
            for m in baseline
            if m["content"] not in sent
        ]

    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores:
        missing = self.missing(messages)
        self.requests.append(messages)
        self.models.append(model)
        self.estimates.append(estimated_tokens)
        for key in missing:
            if key in self.failures:
                raise self.failures[key]
            if key in self.hang_without:
                self.hanging += 1
                if self.hanging == len(self.hang_without):
                    self.all_hanging.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    self.cancelled.append(key)
                    raise
        texts = vllm_shapes.tokenize(
            vllm_shapes.chatml([(m["role"], m["content"]) for m in messages])
        )
        drift = self.ablation_drift if missing else 0.0
        logprobs = [lp + drift for lp in word_logprobs(texts)]
        ids = [vllm_shapes.token_id(text) for text in texts]  # the same token, the same id
        tokens = parse_prompt_logprobs(vllm_shapes.body(texts, lambda i, _: logprobs[i], ids=ids))
        self.prompt_tokens.append(len(texts))
        return PromptScores(tokens=tokens, prompt_tokens=len(texts), endpoint="fake")


def scorer_for(model: FakeModel, **options: Any) -> ConversationScorer:
    return ConversationScorer(model, ScoringOptions(default_model="default-model", **options))


# --- what comes out ----------------------------------------------------------------


async def test_memory_whose_words_the_answers_use_ranks_first() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    ranked = sorted(result.score.memory_weights, key=lambda pair: pair[1], reverse=True)
    assert [key for key, _ in ranked] == ["pet", "food", "home"]


async def test_matrix_holds_what_each_answer_lost_without_each_memory() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    assert result.score.matrix.round(9).tolist() == [[2 * LOST, 0.0], [0.0, 0.0], [0.0, LOST]]


async def test_matrix_rows_and_columns_are_named_by_entry() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    score = result.score
    assert (score.memory_keys, score.memory_entry_indices, score.response_entry_indices) == (
        ("pet", "home", "food"),
        (0, 1, 4),
        (3, 6),
    )


async def test_response_before_the_memory_scores_exactly_zero_despite_server_noise() -> None:
    result = await scorer_for(FakeModel(ablation_drift=-0.01)).score(EVENT)
    matrix = result.score.matrix
    # the noise is there for responses after the memory (home, entry 1, vs. entry 3) ...
    assert (matrix[2, 0], matrix[1, 0] > 0.0) == (0.0, True)


async def test_noise_floor_drops_the_server_noise() -> None:
    result = await scorer_for(FakeModel(ablation_drift=-0.01), noise_floor=0.05).score(EVENT)
    assert result.score.matrix.round(9).tolist() == [[9.82, 0.0], [0.0, 0.0], [0.0, 4.91]]


async def test_metric_option_is_used() -> None:
    result = await scorer_for(FakeModel(), metric="net").score(EVENT)
    assert result.score.metric == "net"


async def test_response_tokens_are_the_answers_tokens_only() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    # "Biscuit", "!", " Your", " dog", " is", " called", " Biscuit", "." and "You", " like", ...
    assert result.score.response_token_counts == (8, 4)


async def test_result_names_the_event_and_the_scorer_version() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    assert (result.event_id, result.conversation_id, result.scorer_version) == (
        "evt-1",
        "conv-1",
        "2",
    )


# --- what it costs --------------------------------------------------------------------


async def test_requests_are_one_baseline_plus_one_per_memory() -> None:
    model = FakeModel()
    result = await scorer_for(model).score(EVENT)
    assert (result.requests, len(model.requests)) == (4, 4)


async def test_prompt_tokens_are_summed_over_every_request() -> None:
    model = FakeModel()
    result = await scorer_for(model).score(EVENT)
    assert result.prompt_tokens == sum(model.prompt_tokens)


async def test_response_tokens_are_counted_once() -> None:
    result = await scorer_for(FakeModel()).score(EVENT)
    assert result.response_tokens == 12


async def test_ablations_reserve_the_baselines_real_token_count() -> None:
    model = FakeModel()
    await scorer_for(model).score(EVENT)
    assert model.estimates[1:] == [model.prompt_tokens[0]] * 3


# --- what it sends --------------------------------------------------------------------


async def test_baseline_sends_system_prompt_context_and_every_entry_in_order() -> None:
    model = FakeModel()
    event = event_of(
        memory("pet", "The user's dog is named Biscuit.", role="system"),
        message("user", "What is my dog called?"),
        message("assistant", "Biscuit."),
        context_message="Today is Saturday.",
    )
    await scorer_for(model).score(event)
    assert model.requests[0] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Today is Saturday."},
        {"role": "system", "content": "The user's dog is named Biscuit."},
        {"role": "user", "content": "What is my dog called?"},
        {"role": "assistant", "content": "Biscuit."},
    ]


async def test_memory_is_sent_as_a_user_message_by_default() -> None:
    model = FakeModel()
    await scorer_for(model).score(EVENT)
    assert model.requests[0][1] == {"role": "user", "content": "The user's dog is named Biscuit."}


async def test_each_ablation_leaves_out_exactly_its_memory_and_nothing_else() -> None:
    model = FakeModel()
    await scorer_for(model).score(EVENT)
    assert sorted(tuple(model.missing(sent)) for sent in model.requests[1:]) == [
        ("food",),
        ("home",),
        ("pet",),
    ]


async def test_ablation_keeps_the_other_messages_in_order() -> None:
    model = FakeModel()
    await scorer_for(model).score(EVENT)
    baseline = model.requests[0]
    without_pet = next(sent for sent in model.requests[1:] if model.missing(sent) == ["pet"])
    assert without_pet == [m for m in baseline if m["content"] != EVENT.entries[0].content]


async def test_default_model_is_used_when_the_event_names_none() -> None:
    model = FakeModel()
    result = await scorer_for(model).score(EVENT)
    assert (set(model.models), result.model) == ({"default-model"}, "default-model")


async def test_events_model_wins_over_the_default() -> None:
    model = FakeModel()
    await scorer_for(model).score(EVENT.model_copy(update={"model": "Qwen/Qwen3-8B"}))
    assert set(model.models) == {"Qwen/Qwen3-8B"}


# --- nothing to attribute ---------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        [message("user", "Hi"), message("assistant", "Hello.")],
        [memory("pet", "The user's dog is named Biscuit."), message("user", "Hi")],
        [],
    ],
    ids=["no-memories", "no-responses", "no-entries"],
)
async def test_event_without_memories_or_responses_costs_nothing(
    entries: list[dict[str, str]],
) -> None:
    model = FakeModel()
    result = await scorer_for(model).score(event_of(*entries))
    assert (result.score.is_empty, result.requests, result.prompt_tokens, model.requests) == (
        True,
        0,
        0,
        [],
    )


async def test_empty_score_still_names_the_memories() -> None:
    event = event_of(memory("pet", "The user's dog is named Biscuit."), message("user", "Hi"))
    result = await scorer_for(FakeModel()).score(event)
    assert (result.score.memory_keys, result.score.matrix.shape) == (("pet",), (1, 0))


# --- failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failures",
    [
        {"pet": InferenceUnavailable("503"), "home": ContextLengthError("too long")},
        {"pet": ContextLengthError("too long"), "home": InferenceUnavailable("503")},
    ],
    ids=["transient-first", "poison-first"],
)
async def test_poison_error_in_one_ablation_wins_over_a_transient_one(
    failures: dict[str, MemscoreError],
) -> None:
    with pytest.raises(ContextLengthError):
        await scorer_for(FakeModel(failures=failures)).score(EVENT)


async def test_transient_error_alone_is_raised_as_is() -> None:
    with pytest.raises(InferenceUnavailable):
        await scorer_for(FakeModel(failures={"home": InferenceUnavailable("503")})).score(EVENT)


async def test_failed_ablation_cancels_the_ones_still_running() -> None:
    model = FakeModel(
        failures={"home": ContextLengthError("too long")},
        hang_without=frozenset({"pet", "food"}),
    )
    with pytest.raises(ContextLengthError):
        await scorer_for(model).score(EVENT)
    assert sorted(model.cancelled) == ["food", "pet"]


async def test_cancelling_the_scorer_cancels_its_ablations() -> None:
    model = FakeModel(hang_without=frozenset({"pet", "home", "food"}))
    task = asyncio.create_task(scorer_for(model).score(EVENT))
    await model.all_hanging.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(model.cancelled) == ["food", "home", "pet"]


def test_fake_scores_a_word_by_whether_an_earlier_message_holds_it() -> None:
    texts = vllm_shapes.tokenize(vllm_shapes.chatml([("user", "dog"), ("assistant", "cat dog")]))
    scored = zip(texts, word_logprobs(texts), strict=True)
    assert [lp for text, lp in scored if text in ("cat", " dog")] == [UNKNOWN, KNOWN]


# --- memories are never responses -----------------------------------------------------


@pytest.mark.parametrize("role", ["user", "assistant", "system", "tool"])
async def test_memory_of_any_role_is_a_row_never_a_column(role: str) -> None:
    event = event_of(
        memory("pet", "The user's dog is named Biscuit.", role=role),
        message("user", "What is my dog called?"),
        message("assistant", "Biscuit."),
    )
    result = await scorer_for(FakeModel()).score(event)
    score = result.score
    assert (score.memory_keys, score.response_entry_indices, score.matrix.shape) == (
        ("pet",),
        (2,),
        (1, 1),
    )


async def test_assistant_role_memory_is_sent_with_its_role() -> None:
    model = FakeModel()
    event = event_of(
        memory("pet", "The user's dog is named Biscuit.", role="assistant"),
        message("user", "What is my dog called?"),
        message("assistant", "Biscuit."),
    )
    await scorer_for(model).score(event)
    assert model.requests[0][1] == {
        "role": "assistant",
        "content": "The user's dog is named Biscuit.",
    }


async def test_assistant_role_memory_does_not_change_what_the_answer_lost() -> None:
    event = event_of(
        memory("pet", "The user's dog is named Biscuit.", role="assistant"),
        message("user", "What is my dog called?"),
        message("assistant", "Biscuit."),
    )
    result = await scorer_for(FakeModel()).score(event)
    assert result.score.matrix.round(9).tolist() == [[LOST]]


# --- strategies and free savings ------------------------------------------------------

TRAILING = event_of(
    memory("pet", "The user's dog is named Biscuit."),  # 0
    message("user", "What is my dog called?"),  # 1
    message("assistant", "Biscuit."),  # 2: the last response
    memory("home", "The user lives in Lisbon."),  # 3: after it
    message("user", "Thanks!"),  # 4: after it
)


async def test_messages_after_the_last_response_are_never_sent() -> None:
    model = FakeModel()
    await scorer_for(model).score(TRAILING)
    assert [m["content"] for m in model.requests[0]][-1] == "Biscuit."


async def test_memory_after_the_last_response_costs_no_request() -> None:
    model = FakeModel()
    result = await scorer_for(model).score(TRAILING)
    assert (result.requests, len(model.requests)) == (2, 2)


async def test_memory_after_the_last_response_is_a_skipped_zero_row() -> None:
    result = await scorer_for(FakeModel()).score(TRAILING)
    assert (result.score.row_kinds, result.score.matrix.round(9).tolist()) == (
        ("exact", "skipped"),
        [[LOST], [0.0]],
    )


async def test_the_configured_strategy_plans_the_ablations() -> None:
    model = FakeModel()
    result = await scorer_for(model, strategy=Surrogate(ablations=3)).score(EVENT)
    assert (result.score.strategy, result.requests) == ("surrogate", 1 + len(model.requests[1:]))


async def test_hierarchical_strategy_finds_the_same_top_memory_as_loo() -> None:
    result = await scorer_for(FakeModel(), strategy=Hierarchical(threshold=0.5)).score(EVENT)
    assert result.score.matrix.round(9)[0].tolist() == [2 * LOST, 0.0]


async def baseline_tokens() -> int:
    model = FakeModel()
    await scorer_for(model).score(EVENT)
    return model.prompt_tokens[0]


async def test_prompt_tokens_stay_under_the_cap() -> None:
    model = FakeModel()
    cap = 2 * await baseline_tokens() + 5  # the baseline and one ablation
    result = await scorer_for(model, max_prompt_tokens=cap).score(EVENT)
    assert result.prompt_tokens <= cap


async def test_a_capped_conversation_is_stored_as_capped_not_dropped() -> None:
    cap = 2 * await baseline_tokens() + 5
    result = await scorer_for(FakeModel(), max_prompt_tokens=cap).score(EVENT)
    assert (result.score.capped, result.score.row_kinds) == (
        True,
        ("exact", "unscored", "unscored"),
    )


async def test_a_cap_below_the_baseline_still_sends_the_baseline_alone() -> None:
    model = FakeModel()
    result = await scorer_for(model, max_prompt_tokens=1).score(EVENT)
    assert (len(model.requests), set(result.score.row_kinds)) == (1, {"unscored"})


async def test_auto_without_a_cap_is_exact_leave_one_out() -> None:
    result = await scorer_for(FakeModel(), strategy=Auto()).score(EVENT)
    assert (result.score.strategy, result.requests) == ("loo", 4)


async def test_requests_and_prompt_tokens_are_counted_per_strategy() -> None:
    requests = metrics.STRATEGY_REQUESTS.labels("surrogate")
    before = requests._value.get()
    result = await scorer_for(FakeModel(), strategy=Surrogate(ablations=3)).score(EVENT)
    assert requests._value.get() - before == result.requests


async def test_a_conversations_prompt_size_is_its_baseline_not_its_mean_request() -> None:
    baseline = (await scorer_for(FakeModel(), max_prompt_tokens=1).score(MANY)).prompt_tokens
    result = await scorer_for(FakeModel(), strategy=Surrogate(ablations=3)).score(MANY)
    assert result.baseline_prompt_tokens == baseline
    assert result.prompt_tokens / result.requests < baseline  # the masks are shorter
    histogram = metrics.PROMPT_TOKENS_PER_CONVERSATION
    before = histogram._sum.get()
    observe_scored(result)
    assert histogram._sum.get() - before == baseline


# Twenty memories, about half the prompt: LOO's ablations are shorter than the baseline,
# so LOO costs less than (N + 1) baselines, and random masks half as much again.
MANY = event_of(
    *[memory(f"m{i}", f"Fact {i}: the user's locker {i} holds thing{i}.") for i in range(20)],
    message("user", "What does locker 3 hold? " + "Say it plainly, please. " * 10),
    message("assistant", "It holds thing3."),
)


async def test_auto_never_spends_more_prompt_tokens_than_loo_whatever_the_cap() -> None:
    loo = await scorer_for(FakeModel()).score(MANY)
    baseline = (await scorer_for(FakeModel(), max_prompt_tokens=1).score(MANY)).prompt_tokens
    # Caps from LOO's real cost up to 21 baselines fit LOO, but not 20 ablations budgeted
    # at the baseline's length: there auto must not spend the cap on a cheaper strategy.
    assert loo.prompt_tokens < 21 * baseline - 100
    below = range(loo.prompt_tokens // 3, loo.prompt_tokens, baseline // 2)
    for cap in [*below, *range(loo.prompt_tokens, 21 * baseline + 1, 5)]:
        result = await scorer_for(FakeModel(), strategy=Auto(), max_prompt_tokens=cap).score(MANY)
        assert result.prompt_tokens <= min(cap, loo.prompt_tokens), (cap, result.score.strategy)


async def test_hybrid_measures_the_memory_the_answer_rests_on_exactly() -> None:
    result = await scorer_for(FakeModel(), strategy=Hybrid()).score(MANY)
    loo = await scorer_for(FakeModel()).score(MANY)
    assert result.score.strategy == "hybrid"
    assert result.score.row_kinds[3] == "exact"
    assert result.score.matrix[3].tolist() == loo.score.matrix[3].tolist()
    assert result.requests < loo.requests
