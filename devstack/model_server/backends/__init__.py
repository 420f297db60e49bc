"""What a model backend offers the HTTP layer, and the scores it hands back.

Two backends implement `ModelBackend`: `smollm2` (a real language model, for correctness)
and `synthetic` (no model, deterministic, with a simulated GPU cost, for speed and load).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A conversation to render with the backend's chat template, as vLLM's chat endpoint does."""

    messages: tuple[ChatMessage, ...]
    add_generation_prompt: bool = True
    continue_final_message: bool = False


@dataclass(frozen=True, slots=True)
class PromptScores:
    """Scores of one prompt of L tokens; row i is about prompt token i+1 given tokens 0..i.

    `top_ids`/`top_logprobs` hold the k most likely tokens per row, best first (k may be 0);
    the prompt token itself is among them when its rank is at most k.
    """

    logprobs: npt.NDArray[np.float32]
    ranks: npt.NDArray[np.int64]
    top_ids: npt.NDArray[np.int64]
    top_logprobs: npt.NDArray[np.float32]
    completion_ids: tuple[int, ...]
    finish_reason: str


class ModelBackend(Protocol):
    """The model behind the server. Every coroutine is safe to run concurrently."""

    @property
    def max_model_len(self) -> int: ...

    async def render_chat(self, prompt: ChatPrompt) -> list[int]:
        """The prompt's token ids, chat template applied (no extra BOS, like vLLM's chat)."""
        ...

    async def encode_text(self, text: str, *, add_special_tokens: bool) -> list[int]: ...

    def decode_token(self, token_id: int) -> str:
        """One token decoded on its own: a piece of a split UTF-8 character gives U+FFFD."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str: ...

    async def score(self, token_ids: Sequence[int], *, top_k: int, max_tokens: int) -> PromptScores:
        """Prompt logprobs of every token after the first, and up to `max_tokens` greedy ones."""
        ...

    def load_stats(self) -> Mapping[str, float | int | None]:
        """Backend-specific figures merged into GET /stats (capacity, queue)."""
        ...

    async def aclose(self) -> None: ...
