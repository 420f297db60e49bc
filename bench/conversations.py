"""Benchmark conversations of an exact size, and vLLM response bodies for them.

Sizes are counted in the synthetic backend's tokenizer, which splits like a byte-level BPE
one (words with their leading space, punctuation alone, digits in threes, non-ASCII as byte
tokens that decode to U+FFFD), so "8,192 prompt tokens" means 8,192 positions in the
response's prompt_logprobs. Bodies come from the model server's own encoder: vLLM's shape,
top-level prompt_logprobs (entry 0 null) and prompt_token_ids, float32 logprobs as vLLM
prints them.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import msgspec

from devstack.model_server.backends import ChatMessage, ChatPrompt
from devstack.model_server.backends.shared_prefill import SharedPrefill
from devstack.model_server.backends.synthetic import SyntheticBackend
from devstack.model_server.protocol import parse_chat_request
from devstack.model_server.responses import ChatResponseEncoder

_WORDS = (  # noqa: SIM905 - a word list reads better as prose
    "apple river garden piano tennis violet harbor maple lantern quartz falcon meadow copper "
    "saffron glacier orchard velvet compass thistle ember cobalt willow summit pepper marble "
    "canyon juniper lagoon prairie basalt cedar nectar plume raven train ticket dinner doctor "
    "sister brother birthday meeting project budget deadline holiday weekend recipe allergy "
    "morning evening because however usually always never maybe really quite about after"
).split()
_NAMES = ("Zoë", "Łódź", "café", "Malmö", "naïve", "São Paulo", "Ana", "Biscuit", "Kraków")
_MARKS = (",", ",", ";", ":", " -", "?", "!")
SYSTEM_PROMPT = (
    "You are a helpful personal assistant with long-term memory. Use the user's memories "
    "when they help, and say so when you are unsure."
)
# <|im_start|> role \n ... <|im_end|> \n around every message, and the generation prompt.
_MESSAGE_FRAME = 4
_GENERATION_PROMPT = 3
_MIN_MEMORY = 7
_MIN_MESSAGE = 4


class _Writer:
    """Text of a given token count, word by word, in the synthetic tokenizer's measure."""

    def __init__(self, rng: random.Random, backend: SyntheticBackend) -> None:
        self._rng = rng
        self._encode = backend.tokenizer.encode

    def tokens(self, text: str) -> int:
        return len(self._encode(text))

    def text(self, budget: int, vocabulary: list[str] | None = None) -> str:
        """Sentences of exactly ``budget`` tokens, from ``vocabulary`` if given."""
        rng, words = self._rng, vocabulary or _WORDS
        out: list[str] = []
        used = 0
        while True:
            length = rng.randint(6, 18)
            parts = [rng.choice(words) for _ in range(length)]
            if rng.random() < 0.3:
                parts.insert(rng.randrange(len(parts)), rng.choice(_NAMES))
            if rng.random() < 0.3:
                parts.insert(rng.randrange(len(parts)), str(rng.randint(1, 99_999)))
            if rng.random() < 0.4:
                parts[rng.randrange(len(parts))] += rng.choice(_MARKS)
            sentence = " ".join(parts).capitalize() + rng.choice((".", ".", ".", "?", "!"))
            sentence = sentence if not out else (" " if rng.random() < 0.85 else "\n") + sentence
            cost = self.tokens(sentence)
            if used + cost > budget:
                break
            out.append(sentence)
            used += cost
        # Top up with plain words (one token each with their space) and a full stop.
        filler = [rng.choice(_WORDS) for _ in range(budget - used - 1)]
        if filler:
            out.append((" " if out else "") + " ".join(filler) + ".")
        text = "".join(out)
        assert self.tokens(text) <= budget
        return text


def conversation_event(
    seed: int, *, memories: int, prompt_tokens: int, turns: int = 6, think: bool = True
) -> dict[str, Any]:
    """A schema-v1 event whose baseline prompt is ``prompt_tokens`` tokens (within ~1%).

    About a third of the tokens are memories (at least a few tokens each; a quarter of them
    retrieved after the first turn, so causal zeros occur); three quarters of the rest are
    assistant answers that reuse the words of one memory each, and the last answer opens
    with a <think> block.
    """
    backend = SyntheticBackend(max_model_len=1 << 20, prefill=SharedPrefill(None, None))
    rng = random.Random(seed)
    writer = _Writer(rng, backend)
    frame = writer.tokens("user") + _MESSAGE_FRAME
    fixed = writer.tokens(SYSTEM_PROMPT) + writer.tokens("system") + _MESSAGE_FRAME
    text_budget = prompt_tokens - fixed - _GENERATION_PROMPT - (memories + 2 * turns) * frame
    memory_budget = max(_MIN_MEMORY, text_budget * 35 // 100 // memories)
    rest = text_budget - memories * memory_budget
    user_budget = rest * 25 // 100 // turns
    answer_budget = rest * 75 // 100 // turns
    if user_budget < _MIN_MESSAGE or answer_budget < 2 * _MIN_MESSAGE:
        raise ValueError(f"{prompt_tokens} tokens is too few for {memories} memories")
    memory_texts = [
        f"Fact {m}: " + writer.text(memory_budget - writer.tokens(f"Fact {m}:"))
        for m in range(memories)
    ]
    late = set(range(memories - memories // 4, memories))
    entries: list[dict[str, Any]] = [
        {"type": "memory", "key": f"mem-{seed}-{m}", "content": text}
        for m, text in enumerate(memory_texts)
        if m not in late
    ]
    for turn in range(turns):
        entries.append({"type": "message", "role": "user", "content": writer.text(user_budget)})
        used = rng.choice(memory_texts).split()[2:]
        if think and turn == turns - 1:
            reasoning = writer.text(answer_budget * 3 // 10)
            # "<think>\n", "\n</think>\n\n": eleven tokens of markup
            answer = writer.text(answer_budget - answer_budget * 3 // 10 - 11, used)
            content = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        else:
            content = writer.text(answer_budget, used)
        entries.append({"type": "message", "role": "assistant", "content": content})
        if turn == 0:
            entries += [
                {"type": "memory", "key": f"mem-{seed}-{m}", "content": memory_texts[m]}
                for m in sorted(late)
            ]
    return {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "conversation_id": f"bench-{seed}",
        "closed_at": "2026-11-24T09:00:00Z",
        "system_prompt": SYSTEM_PROMPT,
        "entries": entries,
    }


class BodyRenderer:
    """Renders what a vLLM server answers to memscore's scoring request, in process.

    The synthetic backend with no simulated cost and the model server's response encoder:
    the same bytes the model server would send, without the HTTP round trip.
    """

    def __init__(self, max_model_len: int = 1 << 20) -> None:
        self._backend = SyntheticBackend(
            max_model_len=max_model_len, prefill=SharedPrefill(None, None)
        )
        self._encoder = ChatResponseEncoder(self._backend.decode_token)

    async def render(self, model: str, messages: list[dict[str, str]]) -> bytes:
        """The body of the answer to memscore's request (prompt_logprobs 0, token ids on)."""
        request = parse_chat_request(
            {
                "model": model,
                "messages": messages,
                "max_tokens": 1,
                "prompt_logprobs": 0,
                "return_token_ids": True,
            },
            max_logprobs=20,
        )
        prompt = ChatPrompt(tuple(ChatMessage(m["role"], m["content"]) for m in messages))
        token_ids = await self._backend.render_chat(prompt)
        scores = await self._backend.score(token_ids, top_k=0, max_tokens=1)
        return self._encoder.chat_completion(
            model=model,
            content=self._backend.decode(scores.completion_ids),
            scores=scores,
            token_ids=token_ids,
            request=request,
        )

    async def prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        prompt = ChatPrompt(tuple(ChatMessage(m["role"], m["content"]) for m in messages))
        return len(await self._backend.render_chat(prompt))


def baseline_messages(event: dict[str, Any]) -> list[dict[str, str]]:
    """The messages of the baseline request, as the scorer sends them."""
    messages = [{"role": "system", "content": event["system_prompt"]}]
    messages += [
        {"role": entry.get("role", "user"), "content": entry["content"]}
        for entry in event["entries"]
    ]
    return messages


def encode_event(event: dict[str, Any]) -> bytes:
    return msgspec.json.encode(event)
