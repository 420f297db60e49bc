"""The `synthetic` backend: no model, deterministic logprobs in which memories matter.

A prompt token is likely (logprob near 0) when context before it supports it: a word that
appeared earlier in the prompt (case and leading space ignored), or any other token whose
bigram did; ChatML scaffolding is always likely and so is the continuation byte of a split
character. Anything else is unlikely (about -3 to -8). A hash of (previous token, token) adds a
deterministic jitter. So dropping a memory that holds a word the answer uses lowers the
answer's logprobs, and dropping an unrelated memory changes nothing (unless --logprob-noise).
Ranks and top-k alternatives are consistent with the logprobs (ordered, total mass <= 1).
Time is simulated by `SharedPrefill`: the server pretends to be a GPU without using the CPU.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from devstack.model_server.backends import ChatPrompt, PromptScores
from devstack.model_server.backends.shared_prefill import SharedPrefill
from devstack.model_server.backends.synthetic_tokenizer import (
    BYTE_BASE,
    IM_END,
    IM_START,
    SyntheticTokenizer,
)

# Common pieces the top-k alternatives are drawn from; their number caps --max-logprobs.
_COMMON_WORDS = (
    "the and of to a in is that for it with as was on be by at this you are or from not have "
    "an they which but I he his her we can all will one their has more if so about what there"
)
ALTERNATIVES = (",", ".", "\n", *(" " + word for word in _COMMON_WORDS.split()))
MAX_TOP_K = len(ALTERNATIVES) - 1

_LN2 = math.log(2.0)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _mix(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: a cheap, well-spread integer hash, vectorised."""
    values = (values ^ (values >> np.uint64(30))) * _MIX1
    values = (values ^ (values >> np.uint64(27))) * _MIX2
    return values ^ (values >> np.uint64(31))


def _pair_hash(
    first: npt.NDArray[np.int64], second: npt.NDArray[np.int64]
) -> npt.NDArray[np.uint64]:
    return _mix(_mix(first.astype(np.uint64)) ^ second.astype(np.uint64))


def _unit(hashes: npt.NDArray[np.uint64]) -> npt.NDArray[np.float64]:
    return (hashes >> np.uint64(11)).astype(np.float64) / float(2**53)


def actual_logprobs(
    ids: npt.NDArray[np.int64], word_keys: npt.NDArray[np.int64], noise: float
) -> npt.NDArray[np.float64]:
    """Logprob of each token ids[1:] given the tokens before it."""
    previous, current = ids[:-1], ids[1:]
    jitter = _unit(_pair_hash(previous, current))
    bigrams = _pair_hash(np.concatenate(([-1], previous)), ids).astype(np.int64) >> 1
    keys = np.where(word_keys != 0, word_keys, bigrams)
    _, first_seen, inverse = np.unique(keys, return_index=True, return_inverse=True)
    supported = (first_seen[inverse] < np.arange(len(ids)))[1:]
    before_previous = np.concatenate(([-1], previous[:-1]))
    scaffolding = ((current <= IM_END) | (previous == IM_START) | (before_previous == IM_START)) | (
        previous == IM_END
    )
    continuation = (current >= BYTE_BASE + 0x80) & (current < BYTE_BASE + 0xC0)
    logprobs = np.where(
        scaffolding,
        -0.001 - 0.05 * jitter,
        np.where(
            supported,
            -0.02 - 0.3 * jitter,
            np.where(continuation, -0.05 - 0.5 * jitter, -3.0 - 5.0 * jitter),
        ),
    )
    if noise > 0:
        # Seeded by the whole prompt: each ablation gets its own noise, every run the same.
        seed = int(_mix(np.frombuffer(ids.tobytes(), dtype=np.uint64)).sum())
        logprobs = logprobs + noise * np.random.default_rng(seed).standard_normal(len(logprobs))
        logprobs = np.minimum(logprobs, -1e-6)
    return logprobs


def ranks_and_top_k(
    ids: npt.NDArray[np.int64],
    logprobs: npt.NDArray[np.float64],
    top_k: int,
    pool: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Ranks of the prompt tokens, and the top-k of a distribution they are consistent with.

    Above the prompt token, rank r gets -(r+1)*ln2 (masses 1/4, 1/8, ...); below it the masses
    halve from the token's own (or, for a rank-1 token, from half of what it leaves). Listed
    logprobs therefore fall with rank and their masses sum to less than 1.
    """
    current = ids[1:]
    # The 1e-3 margin keeps float32 rounding from tying a rank-r alternative with the token.
    above = np.ceil((-logprobs - 1e-3) / _LN2) - 2
    ranks = 1 + np.maximum(above, 0).astype(np.int64)
    n = len(current)
    if top_k == 0:
        return ranks, np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float64)
    start = (_pair_hash(ids[:-1], current) >> np.uint64(7)) % np.uint64(len(pool))
    columns = (start.astype(np.int64)[:, None] + np.arange(top_k + 1)) % len(pool)
    candidates = pool[columns]
    # Drop the prompt token from its own alternatives (stable: the rest keep their order).
    order = np.argsort(candidates == current[:, None], axis=1, kind="stable")
    alternatives = np.take_along_axis(candidates, order, axis=1)[:, :top_k]

    rank = np.arange(1, top_k + 1)[None, :]
    token_rank = ranks[:, None]
    token_lp = logprobs[:, None]
    half_the_rest = np.log1p(-np.exp(token_lp)) - _LN2
    below_top = np.minimum(half_the_rest, token_lp - 0.01) - (rank - 2) * _LN2
    alternative_lp = np.where(
        token_rank == 1,
        below_top,
        np.where(rank < token_rank, -(rank + 1) * _LN2, token_lp - (rank - token_rank) * _LN2),
    )
    slot = np.where(rank < token_rank, rank - 1, rank - 2).clip(0, top_k - 1)
    top_ids = np.where(
        rank == token_rank, current[:, None], np.take_along_axis(alternatives, slot, 1)
    )
    top_lp = np.where(rank == token_rank, token_lp, alternative_lp)
    return ranks, top_ids, top_lp


class SyntheticBackend:
    """Deterministic stand-in for a GPU server; see the module docstring."""

    def __init__(
        self,
        *,
        max_model_len: int,
        prefill: SharedPrefill,
        request_overhead_s: float = 0.0,
        logprob_noise: float = 0.0,
    ) -> None:
        self._max_model_len = max_model_len
        self._prefill = prefill
        self._overhead_s = request_overhead_s
        self._noise = logprob_noise
        self.tokenizer = SyntheticTokenizer()
        self._pool = np.array([self.tokenizer.piece_id(p) for p in ALTERNATIVES], np.int64)
        self._newline = self.tokenizer.encode("\n")

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    async def render_chat(self, prompt: ChatPrompt) -> list[int]:
        encode = self.tokenizer.encode
        ids: list[int] = []
        last = len(prompt.messages) - 1
        for index, message in enumerate(prompt.messages):
            ids += [IM_START, *encode(message.role), *self._newline, *encode(message.content)]
            if not (prompt.continue_final_message and index == last):
                ids += [IM_END, *self._newline]
        if prompt.add_generation_prompt:
            ids += [IM_START, *encode("assistant"), *self._newline]
        return ids

    async def encode_text(self, text: str, *, add_special_tokens: bool) -> list[int]:
        return self.tokenizer.encode(text)  # no BOS in this vocabulary to add

    def decode_token(self, token_id: int) -> str:
        return self.tokenizer.decode_token(token_id)

    def decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(token_ids)

    async def score(self, token_ids: Sequence[int], *, top_k: int, max_tokens: int) -> PromptScores:
        if self._overhead_s > 0:
            await asyncio.sleep(self._overhead_s)
        await self._prefill.process(len(token_ids))
        ids = np.fromiter(token_ids, np.int64, len(token_ids))
        word_key = self.tokenizer.word_key
        keys = np.fromiter((word_key(t) for t in token_ids), np.int64, len(token_ids))
        logprobs = actual_logprobs(ids, keys, self._noise)
        ranks, top_ids, top_lp = ranks_and_top_k(ids, logprobs, top_k, self._pool)
        return PromptScores(
            logprobs=logprobs.astype(np.float32),
            ranks=ranks,
            top_ids=top_ids,
            top_logprobs=top_lp.astype(np.float32),
            completion_ids=self._complete(token_ids[-1], max_tokens),
            finish_reason="length",
        )

    def _complete(self, last_id: int, max_tokens: int) -> tuple[int, ...]:
        """A deterministic continuation of pool words, each chosen by the one before."""
        completion: list[int] = []
        previous = np.array([last_id], np.int64)
        for _ in range(max_tokens):
            index = int(_mix(previous.astype(np.uint64))[0] % np.uint64(len(self._pool)))
            completion.append(int(self._pool[index]))
            previous = self._pool[index : index + 1]
        return tuple(completion)

    def load_stats(self) -> Mapping[str, float | int | None]:
        now = asyncio.get_running_loop().time()
        return {
            "capacity_tokens_per_second": self._prefill.tokens_per_second,
            "max_batch_tokens": self._prefill.max_batch_tokens,
            "prefill_in_flight": self._prefill.in_flight,
            "prefill_queued": self._prefill.queued,
            "prefill_tokens_processed": round(self._prefill.processed_tokens),
            "prefill_busy_seconds": self._prefill.busy_seconds(now),
        }

    async def aclose(self) -> None:
        return None
