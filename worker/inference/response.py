"""Parse a vLLM chat-completions body with prompt_logprobs into a TokenStream.

Shape (vLLM, chat and completions endpoints): top-level ``prompt_logprobs``, one
entry per prompt token, entry 0 null, each other entry a dict keyed by token-id
strings -> {logprob, rank, decoded_token}. The dict holds the actual prompt token
and, with prompt_logprobs=k>=1, the top-k as well; its order and size are not
relied on. -inf arrives as -9999.0. Anything else — NaN, a missing field, a
length that disagrees with usage.prompt_tokens — is an InferenceResponseError.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter

import msgspec
import numpy as np
import numpy.typing as npt

from worker.errors import InferenceResponseError
from worker.scoring.tokens import TokenStream, normalize_token_texts


class AmbiguousPromptTokens(InferenceResponseError):
    """Several candidates at a position and no token ids to pick the prompt's one.

    The client answers this by asking the server's /tokenize for the prompt's ids.
    """

    error_class = "ambiguous_tokens"


# gc=False: these hold only numbers and strings, so they can never be part of a cycle,
# and an 8k-token body makes 8k of them.
class _Logprob(msgspec.Struct, gc=False):
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


class _Usage(msgspec.Struct, gc=False):
    prompt_tokens: int


class _Body(msgspec.Struct):
    prompt_logprobs: list[dict[str, _Logprob] | None] | None = None
    prompt_token_ids: list[int] | None = None
    usage: _Usage | None = None


_decoder = msgspec.json.Decoder(_Body)


class _IdTexts(dict[int, str]):
    """str(token id), remembered: a vocabulary's ids recur in every response, and a
    remembered string also brings its hash, so the position's dict finds it faster.

    Bounded: a server sending ever new ids only makes it start over.
    """

    limit = 1 << 18

    def __missing__(self, token_id: int) -> str:
        if len(self) >= self.limit:
            self.clear()
        text = self[token_id] = str(token_id)
        return text


_id_texts = _IdTexts()
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


_Tokens = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], list[str]]
_logprob_of = attrgetter("logprob")
_text_of = attrgetter("decoded_token")


def _checked_ids(known: list[int]) -> npt.NDArray[np.int64]:
    try:
        ids = np.array(known, dtype=np.int64)
    except OverflowError:
        ids = None
    if ids is None or (ids.size and int(ids.min()) < 0):
        raise InferenceResponseError("prompt_token_ids holds an id outside 0..2**63-1")
    return ids


def _common_shape(
    entries: list[dict[str, _Logprob] | None],
    known: list[int] | None,
    known_ids: npt.NDArray[np.int64] | None,
    id_text: Callable[[int], str] = str,
) -> _Tokens | None:
    """The tokens of a well-formed body in a few C-level passes, or None to go slowly.

    Well-formed: with the prompt's ids known, every entry holds its id; without them, every
    entry holds one candidate keyed by a plain decimal id (what prompt_logprobs=0 gives).
    Anything else — a null, a missing id, several candidates, an odd key, a missing
    decoded_token — is left to the position-by-position walk, which names the problem.
    """
    rest = entries[1:]
    count = len(entries)
    try:
        if known is not None and known_ids is not None:
            # entry[str(id)] at every position, as the walk does, but in one C-level pass.
            values: list[_Logprob] = list(map(dict.__getitem__, rest, map(id_text, known[1:])))  # type: ignore[arg-type]
            ids = known_ids
        else:
            if set(map(len, rest)) != {1}:  # type: ignore[arg-type]
                return None
            keys: list[str] = list(chain.from_iterable(rest))  # type: ignore[arg-type]
            joined = "".join(keys)
            lengths = set(map(len, keys))
            if not (joined.isascii() and joined.isdigit()) or min(lengths) < 1:
                return None
            if max(lengths) > _MAX_TOKEN_ID_DIGITS:
                return None
            ids = np.empty(count, dtype=np.int64)
            ids[0] = -1
            ids[1:] = list(map(int, keys))
            values = list(chain.from_iterable(map(dict.values, rest)))  # type: ignore[arg-type]
    except (KeyError, TypeError, OverflowError):
        return None
    texts: list[str] = [""]
    texts += map(_text_of, values)
    if None in texts:
        return None
    logprobs = np.empty(count, dtype=np.float64)
    logprobs[0] = math.nan
    logprobs[1:] = np.fromiter(map(_logprob_of, values), np.float64, count - 1)
    return ids, logprobs, texts


def _position_by_position(
    entries: list[dict[str, _Logprob] | None], known: list[int] | None, requested_k: int
) -> _Tokens:
    count = len(entries)
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
    return ids, logprobs, texts


def parse_prompt_logprobs(
    body: bytes, *, requested_k: int = 0, prompt_token_ids: list[int] | None = None
) -> TokenStream:
    """The prompt's tokens from a response to a request with prompt_logprobs=requested_k.

    ``prompt_token_ids`` (e.g. from /tokenize) overrides the ids in the body.
    """
    with _cyclic_gc_paused():
        return _parse(body, requested_k, prompt_token_ids)


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: for work that makes many objects and no cycles.

    A body decodes into a dict per position: tens of thousands of new containers that cannot
    form a cycle and are freed when the parse is over. Collections set off meanwhile would
    walk them, and, as they are still alive, promote them to the old generation, whose
    growth then sets off full collections of the whole process heap (aiokafka, SQLAlchemy,
    pydantic...) every few responses.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _parse(body: bytes, requested_k: int, prompt_token_ids: list[int] | None) -> TokenStream:
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
    known_ids = None if known is None else _checked_ids(known)
    if entries[0] is not None:
        raise InferenceResponseError("prompt_logprobs[0] should be null")
    # Ids from the body are plain ints; ids handed in may be anything int-like (a bool from
    # a JSON true is one), which must not reach the shared memo of their texts.
    id_text = _id_texts.__getitem__ if prompt_token_ids is None else str
    tokens = _common_shape(entries, known, known_ids, id_text)
    ids, logprobs, texts = tokens or _position_by_position(entries, known, requested_k)
    if not np.all(np.isfinite(logprobs[1:])):
        raise InferenceResponseError("prompt_logprobs holds a non-finite logprob")
    if np.any(logprobs[1:] > 0.0):
        raise InferenceResponseError("prompt_logprobs holds a positive logprob")
    return TokenStream(token_ids=ids, logprobs=logprobs, texts=normalize_token_texts(texts))
