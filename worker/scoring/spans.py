"""Find each assistant response's tokens in a prompt, whatever the chat template.

The decoded token texts are joined and every message's content is looked up in
order, each after its own header and never inside chat-template markup
(headers.py), so that a short answer ("a", "is") is not found in ``<|im_start|>`` or
``assistant``. A token belongs to a response when its text overlaps the response's
content, so role headers, end-of-turn tokens and reasoning blocks are never
scored. Matching tolerates what templates and per-token decoding do to text:
surrounding whitespace trimmed, whitespace lost between SentencePiece pieces, and
non-ASCII characters split across tokens (decoded as U+FFFD).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.errors import ResponseLocateError
from worker.scoring.headers import Markup
from worker.scoring.text_search import Haystack, TextPattern

# A capturing group, so that split() keeps the blocks: text, block, text, ..., text.
_THINK = re.compile(r"(<think>.*?</think>)", re.DOTALL)


def response_segments(content: str) -> list[str]:
    """The scored parts of an assistant message: its text outside <think> blocks."""
    return [part.strip() for part in _THINK.split(content)[::2] if part.strip()]


@dataclass(frozen=True)
class MessagePattern:
    """How to find one sent message: its parts in the order they are rendered.

    A part is (pattern, scored). A response's text outside <think> blocks is scored;
    its reasoning blocks are passed over, so that an answer quoted inside one is not
    mistaken for the answer. Any other message's parts are passed over: anchors that
    move the search on.

    Whether a message is a response is the caller's to say, not its role's: a memory
    sent with role "assistant" is rendered like an answer but is never scored.
    """

    is_response: bool
    parts: tuple[tuple[TextPattern, bool], ...]

    @classmethod
    def for_message(cls, role: str, content: str, *, is_response: bool) -> MessagePattern:
        if role != "assistant":
            # Only assistant turns are rendered with their reasoning split off (or dropped).
            stripped = content.strip()
            return cls(is_response, ((TextPattern(stripped), is_response),) if stripped else ())
        parts: list[tuple[TextPattern, bool]] = []
        for number, piece in enumerate(_THINK.split(content)):
            is_reasoning = number % 2 == 1
            text = (piece[len("<think>") : -len("</think>")] if is_reasoning else piece).strip()
            if text:
                parts.append((TextPattern(text), is_response and not is_reasoning))
        return cls(is_response, tuple(parts))


def _token_range(
    starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], begin: int, end: int
) -> tuple[int, int]:
    """Indices [first, last) of the tokens whose text overlaps chars [begin, end).

    Tokens of no text right at ``begin`` belong to the range: vLLM 0.32 decodes a
    character split over several tokens as "" for the leading pieces and the whole
    character on the last one, so a response opening with such a character starts
    with those empty pieces.
    """
    first = int(np.searchsorted(ends, begin, side="right"))
    while first > 0 and ends[first - 1] == begin and starts[first - 1] == begin:
        first -= 1
    last = int(np.searchsorted(starts, end, side="left"))
    return first, max(first, last)


def _search(
    pattern: TextPattern, text: Haystack, markup: Markup, pos: int
) -> tuple[int, int] | None:
    """The leftmost match at or after ``pos`` that is not inside the template's markup."""
    while (match := pattern.search(text, pos)) is not None:
        if markup.allows(*match):
            return match
        pos = match[0] + 1
    return None


def locate_responses(
    texts: Sequence[str], messages: Sequence[MessagePattern]
) -> list[npt.NDArray[np.intp]]:
    """Token indices of each response message, in message order.

    Raises ResponseLocateError naming the response (its 0-based index among the
    responses) when its content is not in the prompt.
    """
    joined = Haystack("".join(texts))
    markup = Markup.of(joined.text)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    cursor = 0  # after the last message found
    settled = 0  # after the last response found: anchors may overshoot, responses do not
    found: list[npt.NDArray[np.intp]] = []
    for message in messages:
        index = len(found)
        ranges: list[npt.NDArray[np.intp]] = []
        if message.is_response:
            cursor = markup.after_answer_header(cursor)
        for pattern, scored in message.parts:
            if not scored:
                # Templates that alter a message or drop a reasoning block leave no match.
                match = _search(pattern, joined, markup, cursor)
                if match:
                    cursor = match[1]
                continue
            match = _search(pattern, joined, markup, cursor)
            if match is None and cursor != settled:
                # Before this response's first part is found, its header is still ahead.
                retry = settled if ranges else markup.after_answer_header(settled)
                match = _search(pattern, joined, markup, retry)
            if match is None:
                raise ResponseLocateError(
                    f"response {index} (part {len(ranges)}) not found in the prompt's tokens: "
                    "the chat template does not render it verbatim, or the server's "
                    "tokens do not belong to this conversation",
                    response_index=index,
                )
            first, last = _token_range(starts, ends, *match)
            ranges.append(np.arange(first, last, dtype=np.intp))
            cursor = settled = match[1]
        if message.is_response:
            found.append(np.concatenate(ranges) if ranges else np.empty(0, dtype=np.intp))
    return found
