"""Find each assistant response's tokens in a prompt, whatever the chat template.

The decoded token texts are joined and every message's content is looked up in
order. A token belongs to a response when its text overlaps the response's
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

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_WHITESPACE_RUN = re.compile(r"\s+")


def _text_pattern(text: str) -> str:
    """A regex for ``text`` as it can come back from per-token decoding."""
    out: list[str] = []
    pos = 0
    for match in re.finditer(r"\s+|[^\x00-\x7f]+", text):
        out.append(re.escape(text[pos : match.start()]))
        run = match.group()
        if run.isspace():
            out.append(r"\s*")
        else:
            chars = re.escape("".join(sorted(set(run))))
            # Whole characters, or the U+FFFD pieces of characters split across tokens.
            out.append(f"(?:{re.escape(run)}|[{chars}\ufffd]+)")
        pos = match.end()
    out.append(re.escape(text[pos:]))
    return "".join(out)


def response_segments(content: str) -> list[str]:
    """The scored parts of an assistant message: its text outside <think> blocks."""
    return [part.strip() for part in _THINK.split(content) if part.strip()]


@dataclass(frozen=True)
class MessagePattern:
    """How to find one sent message: the scored segments or an anchor."""

    is_response: bool
    segments: tuple[re.Pattern[str], ...]
    reasoning: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def for_message(cls, role: str, content: str) -> MessagePattern:
        if role == "assistant":
            reasoning = tuple(
                re.compile(_text_pattern(block[len("<think>") : -len("</think>")].strip()))
                for block in _THINK.findall(content)
                if block[len("<think>") : -len("</think>")].strip()
            )
            segments = tuple(re.compile(_text_pattern(s)) for s in response_segments(content))
            return cls(True, segments, reasoning)
        stripped = content.strip()
        return cls(False, (re.compile(_text_pattern(stripped)),) if stripped else ())


def _token_range(
    starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64], begin: int, end: int
) -> tuple[int, int]:
    """Indices [first, last) of the tokens whose text overlaps chars [begin, end)."""
    first = int(np.searchsorted(ends, begin, side="right"))
    last = int(np.searchsorted(starts, end, side="left"))
    return first, max(first, last)


def locate_responses(
    texts: Sequence[str], messages: Sequence[MessagePattern]
) -> list[npt.NDArray[np.intp]]:
    """Token indices of each response message, in message order.

    Raises ResponseLocateError naming the response (its 0-based index among the
    responses) when its content is not in the prompt.
    """
    joined = "".join(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    cursor = 0  # after the last message found
    settled = 0  # after the last response found: anchors may overshoot, responses do not
    found: list[npt.NDArray[np.intp]] = []
    for message in messages:
        if not message.is_response:
            for pattern in message.segments:
                match = pattern.search(joined, cursor)
                if match:
                    cursor = match.end()
            continue
        index = len(found)
        for pattern in message.reasoning:
            # A rendered reasoning block is skipped so that an answer quoted inside it
            # is not mistaken for the answer; templates that drop it leave no match.
            match = pattern.search(joined, cursor)
            if match:
                cursor = match.end()
        ranges: list[npt.NDArray[np.intp]] = []
        for number, pattern in enumerate(message.segments):
            match = pattern.search(joined, cursor)
            if match is None and cursor != settled:
                match = pattern.search(joined, settled)
            if match is None:
                raise ResponseLocateError(
                    f"response {index} (part {number}) not found in the prompt's tokens: "
                    "the chat template does not render it verbatim, or the server's "
                    "tokens do not belong to this conversation",
                    response_index=index,
                )
            first, last = _token_range(starts, ends, match.start(), match.end())
            ranges.append(np.arange(first, last, dtype=np.intp))
            cursor = settled = match.end()
        found.append(np.concatenate(ranges) if ranges else np.empty(0, dtype=np.intp))
    return found
