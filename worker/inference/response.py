"""Parse a vLLM chat-completions body with prompt_logprobs into a TokenStream.

Shape (vLLM, chat and completions endpoints): top-level ``prompt_logprobs``, one
entry per prompt token, entry 0 null, each other entry a dict keyed by token-id
strings -> {logprob, rank, decoded_token}. The dict holds the actual prompt token
and, with prompt_logprobs=k>=1, the top-k as well; its order and size are not
relied on. -inf arrives as -9999.0. Anything else — NaN, a missing field, a
length that disagrees with usage.prompt_tokens — is an InferenceResponseError.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from worker.errors import InferenceResponseError
from worker.scoring.tokens import TokenStream, normalize_token_texts


class AmbiguousPromptTokens(InferenceResponseError):
    """Several candidates at a position and no token ids to pick the prompt's one.

    The client answers this by asking the server's /tokenize for the prompt's ids.
    """

    error_class = "ambiguous_tokens"


class _Logprob(msgspec.Struct):
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int


class _Body(msgspec.Struct):
    prompt_logprobs: list[dict[str, _Logprob] | None] | None = None
    prompt_token_ids: list[int] | None = None
    usage: _Usage | None = None


_decoder = msgspec.json.Decoder(_Body)
_MAX_TOKEN_ID = int(np.iinfo(np.int64).max)
_MAX_TOKEN_ID_DIGITS = len(str(_MAX_TOKEN_ID))


def _pick(
    entry: dict[str, _Logprob], position: int, known_id: int | None, requested_k: int
) -> tuple[int, _Logprob]:
    if known_id is not None:
        found = entry.get(str(known_id))
        if found is None:
            raise InferenceResponseError(
                f"prompt_logprobs[{position}] lacks the prompt token {known_id}"
            )
        return known_id, found
    if not entry:
        raise InferenceResponseError(f"prompt_logprobs[{position}] is empty")
    if len(entry) == 1:
        ((key, value),) = entry.items()
    else:
        # k+1 entries: the prompt token is the one outside the top-k (rank > k).
        # k entries: it is one of the top-k and nothing but its id tells which.
        outside = [(k, v) for k, v in entry.items() if v.rank is not None and v.rank > requested_k]
        if len(entry) != requested_k + 1 or len(outside) != 1:
            raise AmbiguousPromptTokens(
                f"prompt_logprobs[{position}] has {len(entry)} candidates and the response "
                "has no prompt_token_ids to tell the prompt token among them"
            )
        ((key, value),) = outside
    return _token_id(key, position), value


def _token_id(key: str, position: int) -> int:
    # int() would also take " 7", "1_0" and "-5", and refuses 5000-digit strings.
    if key.isascii() and key.isdigit() and len(key) <= _MAX_TOKEN_ID_DIGITS:
        token_id = int(key)
        if token_id <= _MAX_TOKEN_ID:
            return token_id
    raise InferenceResponseError(f"prompt_logprobs[{position}] is keyed by no valid token id")


def parse_prompt_logprobs(
    body: bytes, *, requested_k: int = 0, prompt_token_ids: list[int] | None = None
) -> TokenStream:
    """The prompt's tokens from a response to a request with prompt_logprobs=requested_k.

    ``prompt_token_ids`` (e.g. from /tokenize) overrides the ids in the body.
    """
    try:
        parsed = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InferenceResponseError(f"unreadable response body: {exc}") from None
    except UnicodeDecodeError:
        raise InferenceResponseError("response body is not valid UTF-8") from None
    except RecursionError:
        raise InferenceResponseError("unreadable response body: nested too deeply") from None
    entries = parsed.prompt_logprobs
    if not entries:
        raise InferenceResponseError("response has no prompt_logprobs")
    count = len(entries)
    if parsed.usage is not None and parsed.usage.prompt_tokens != count:
        raise InferenceResponseError(
            f"prompt_logprobs has {count} positions but usage.prompt_tokens is "
            f"{parsed.usage.prompt_tokens}"
        )
    known = prompt_token_ids if prompt_token_ids is not None else parsed.prompt_token_ids
    if known is not None and len(known) != count:
        raise InferenceResponseError(
            f"prompt_token_ids has {len(known)} tokens but prompt_logprobs {count}"
        )
    if known is not None and not all(0 <= token <= _MAX_TOKEN_ID for token in known):
        raise InferenceResponseError("prompt_token_ids holds an id outside 0..2**63-1")
    if entries[0] is not None:
        raise InferenceResponseError("prompt_logprobs[0] should be null")
    ids = np.empty(count, dtype=np.int64)
    logprobs = np.empty(count, dtype=np.float64)
    texts: list[str] = [""] * count
    ids[0] = known[0] if known is not None else -1
    logprobs[0] = math.nan
    for position in range(1, count):
        entry = entries[position]
        if entry is None:
            raise InferenceResponseError(f"prompt_logprobs[{position}] is null")
        token_id, value = _pick(
            entry, position, None if known is None else known[position], requested_k
        )
        if value.decoded_token is None:
            raise InferenceResponseError(f"prompt_logprobs[{position}] has no decoded_token")
        ids[position] = token_id
        logprobs[position] = value.logprob
        texts[position] = value.decoded_token
    if not np.all(np.isfinite(logprobs[1:])):
        raise InferenceResponseError("prompt_logprobs holds a non-finite logprob")
    if np.any(logprobs[1:] > 0.0):
        raise InferenceResponseError("prompt_logprobs holds a positive logprob")
    return TokenStream(token_ids=ids, logprobs=logprobs, texts=normalize_token_texts(texts))
