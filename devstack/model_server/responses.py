"""Response bodies in vLLM's shapes: chat completions with prompt_logprobs, tokenize, models.

The prompt_logprobs list is written by string building, with a per-token cache of the JSON
around each number: an 8k-token response is ~600 kB, and the synthetic backend must make one in
a few milliseconds to keep up with a benchmark's simulated GPU.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from devstack.model_server.backends import PromptScores
from devstack.model_server.protocol import ApiError, ChatRequest, dumps

_NUMBERS = msgspec.json.Encoder()


def _json_numbers(values: npt.NDArray[Any]) -> list[str]:
    """Each number as JSON text; msgspec formats floats ~2x faster than repr() one by one."""
    if values.size == 0:
        return []
    return _NUMBERS.encode(values.ravel().tolist())[1:-1].decode().split(",")


class ChatResponseEncoder:
    """Writes chat completion bodies; caches the JSON fragments of each token id it has seen."""

    def __init__(self, decode_token: Callable[[int], str]) -> None:
        self._decode_token = decode_token
        self._before: dict[int, str] = {}  # '"ID":{"logprob":'
        self._after: dict[int, str] = {}  # ',"decoded_token":"TEXT"}'

    def _learn(self, token_ids: set[int]) -> None:
        for token_id in token_ids.difference(self._before):
            self._before[token_id] = f'"{token_id}":{{"logprob":'
            self._after[token_id] = f',"decoded_token":{dumps(self._decode_token(token_id))}}}'

    def prompt_logprobs(self, token_ids: Sequence[int], scores: PromptScores) -> str:
        """vLLM's list: null, then per token {id: {logprob, rank, decoded_token}, ...top-k}."""
        if np.isnan(scores.logprobs).any() or np.isnan(scores.top_logprobs).any():
            raise ApiError(500, "NaN in prompt logprobs", error_type="InternalServerError")
        actual = list(token_ids[1:])
        self._learn(set(actual) | set(scores.top_ids.ravel().tolist()))
        # JSON has no -inf; vLLM sends -9999.0 in its place.
        logprobs = _json_numbers(np.maximum(scores.logprobs.astype(np.float64), -9999.0))
        ranks = _json_numbers(scores.ranks)
        before = map(self._before.__getitem__, actual)
        after = map(self._after.__getitem__, actual)
        if scores.top_ids.shape[1] == 0:
            entries = map('{{{}{},"rank":{}{}}}'.format, before, logprobs, ranks, after)
        else:
            extras = self._top_entries(actual, scores)
            entries = map('{{{}{},"rank":{}{}{}}}'.format, before, logprobs, ranks, after, extras)
        return "[" + ",".join(["null", *entries]) + "]"

    def _top_entries(self, actual: list[int], scores: PromptScores) -> list[str]:
        """Per row, the top-k entries other than the prompt token itself (vLLM merges it)."""
        rows, k = scores.top_ids.shape
        flat_ids = scores.top_ids.ravel().tolist()
        entries = list(
            map(
                ',{}{},"rank":{}{}'.format,
                map(self._before.__getitem__, flat_ids),
                _json_numbers(np.maximum(scores.top_logprobs.astype(np.float64), -9999.0)),
                [str(rank) for rank in range(1, k + 1)] * rows,
                map(self._after.__getitem__, flat_ids),
            )
        )
        duplicates = np.flatnonzero(scores.top_ids == np.asarray(actual)[:, None])
        for index in duplicates.tolist():
            entries[index] = ""
        return ["".join(entries[row * k : row * k + k]) for row in range(rows)]

    def chat_completion(
        self,
        *,
        model: str,
        content: str,
        scores: PromptScores,
        token_ids: Sequence[int],
        request: ChatRequest,
    ) -> bytes:
        completion_tokens = len(scores.completion_ids)
        head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": scores.finish_reason,
                    "stop_reason": None,
                }
            ],
            "usage": {
                "prompt_tokens": len(token_ids),
                "total_tokens": len(token_ids) + completion_tokens,
                "completion_tokens": completion_tokens,
            },
        }
        parts = [dumps(head)[:-1], ',"prompt_logprobs":']
        if request.prompt_logprobs is None:
            parts.append("null")
        else:
            parts.append(self.prompt_logprobs(token_ids, scores))
        if request.return_token_ids:
            parts += [',"prompt_token_ids":', dumps(list(token_ids))]
        parts.append("}")
        return "".join(parts).encode()


def tokenize_body(token_ids: Sequence[int], max_model_len: int) -> bytes:
    body = {"count": len(token_ids), "max_model_len": max_model_len, "tokens": list(token_ids)}
    return dumps({**body, "token_strs": None}).encode()


def models_body(model: str, root: str, max_model_len: int, created: int) -> bytes:
    permission = {
        "id": f"modelperm-{uuid.uuid4().hex}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    card = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": root,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [permission],
    }
    return dumps({"object": "list", "data": [card]}).encode()
