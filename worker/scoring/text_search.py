"""Find a message's text in the prompt's joined token texts, tolerating per-token decoding.

A text's regex (`text_regex`) is the text itself, with optional whitespace wherever the text
has whitespace and, for each run of non-ASCII characters, the run or its U+FFFD pieces.
Compiling it costs the re module's pure-Python parser about a microsecond per character — more
than parsing the server's whole response — and every conversation brings new texts. So
`TextPattern` finds the same match without it: when the prompt holds no whitespace but ASCII's,
that regex cannot backtrack over a visible ASCII character, so a match is a substring match of
two skeletons (the texts without whitespace, each stretch of non-ASCII characters and the
whitespace around them shrunk to one placeholder), checked where the prompt has whitespace and
stretch by stretch. Texts without a visible ASCII character, and prompts with other
whitespace, are searched with the regex itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

# ASCII whitespace, or a run of non-ASCII characters (non-ASCII spaces included: a
# tokenizer splits them into U+FFFD pieces like any other multi-byte character).
_LOOSE_RUN = re.compile(r"(?a:\s)+|[^\x00-\x7f]+")
# Whitespace to the regex's \s* besides ASCII whitespace (str.isspace(), as re's \s): with
# any of it in the prompt, \s* could take part of a non-ASCII run and give it back, so only
# the regex knows the answer.
OTHER_SPACE_CODES = np.array(
    [0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000],
    dtype="<u4",
)
_ASCII_SPACE = " \t\n\r\f\v"
_PLACEHOLDER = "\x00"
# The placeholder, and the ASCII characters that \s takes besides ASCII whitespace.
_UNSEARCHABLE_ASCII = "\x00\x1c\x1d\x1e\x1f"
_REPLACEMENT = "\ufffd"


def text_regex(text: str) -> str:
    """A regex for ``text`` as it can come back from per-token decoding."""
    out: list[str] = []
    pos = 0
    for match in _LOOSE_RUN.finditer(text):
        out.append(re.escape(text[pos : match.start()]))
        run = match.group()
        if run.isascii():  # whitespace, which per-token decoding may lose
            out.append(r"\s*")
        else:
            chars = re.escape("".join(sorted(set(run))))
            pieces = f"[{chars}\ufffd]+"
            # Whole characters, or the U+FFFD pieces of characters split across tokens.
            # Atomic: runs separated only by optional whitespace could otherwise share
            # out one long stretch of U+FFFD in exponentially many ways. A run holding
            # U+FFFD itself may come back as more of them: only its pieces can tell.
            whole = "" if "\ufffd" in run else f"{re.escape(run)}|"
            out.append(f"(?>{whole}{pieces})")
        pos = match.end()
    out.append(re.escape(text[pos:]))
    return "".join(out)


@dataclass(frozen=True, eq=False)
class _Skeleton:
    """A text without whitespace, each stretch of non-ASCII characters one placeholder.

    A stretch is a maximal run of whitespace and non-ASCII characters that holds at least
    one non-ASCII character (so "é ë" is one stretch). ``positions[k]`` is where skeleton
    character k starts in the text, ``ends[k]`` where its stretch ends (placeholders only);
    ``gaps`` are the skeleton indices that whitespace alone precedes, in order.
    """

    text: str
    chars: str
    positions: npt.NDArray[np.intp]
    ends: npt.NDArray[np.intp]
    gaps: npt.NDArray[np.intp]

    @classmethod
    def of(cls, text: str, codes: npt.NDArray[np.uint32] | None = None) -> _Skeleton:
        if codes is None:
            codes = _code_points(text)
        wide = codes >= 0x80
        loose = wide | (codes == 0x20) | ((codes - 0x09) < 5)  # unsigned: 0x09..0x0D
        edges = np.flatnonzero(np.diff(loose, prepend=False, append=False))
        starts, ends = edges[0::2], edges[1::2]
        stretch = np.zeros(len(starts), dtype=np.bool_)
        stretch[np.searchsorted(starts, np.flatnonzero(wide), side="right") - 1] = True
        keep = ~loose
        keep[starts[stretch]] = True
        positions = np.flatnonzero(keep)
        placeholders = np.searchsorted(positions, starts[stretch])
        kept = codes[positions].astype(np.uint8)  # visible ASCII, or a placeholder below
        kept[placeholders] = 0
        stretch_ends = np.zeros(len(positions), dtype=np.intp)
        stretch_ends[placeholders] = ends[stretch]
        gap_ends = np.zeros(len(codes) + 1, dtype=np.bool_)
        gap_ends[ends[~stretch]] = True
        gaps = np.flatnonzero(gap_ends[positions])
        chars = kept.tobytes().decode("latin-1")
        return cls(text, chars, positions, stretch_ends, gaps)

    def stretch_at(self, k: int) -> str:
        return self.text[int(self.positions[k]) : int(self.ends[k])]


class Haystack:
    """The joined token texts of one prompt, indexed once for all its messages' searches."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def skeleton(self) -> _Skeleton | None:
        """None when only the regexes can search this text."""
        text = self.text
        if any(char in text for char in _UNSEARCHABLE_ASCII):
            return None
        codes = _code_points(text)
        if not text.isascii() and np.isin(codes[codes >= 0x80], OTHER_SPACE_CODES).any():
            return None
        return _Skeleton.of(text, codes)


class _Stretch:
    """One stretch of the text, and whether a stretch of the prompt is it.

    Both lie between visible ASCII characters, so the text's elements must take all of the
    prompt's stretch, and (the prompt holding no other whitespace) its \\s* take ASCII
    whitespace only. A stretch of one non-ASCII run, with whitespace or not around it, is
    decided here; anything else by the stretch's own small regex.
    """

    def __init__(self, at: int, text: str) -> None:
        self.at = at  # skeleton index of its placeholder
        self.text = text
        self._core = text.strip(_ASCII_SPACE)
        self._space_before = text[0] in _ASCII_SPACE
        self._space_after = text[-1] in _ASCII_SPACE
        self._one_run = not any(char in _ASCII_SPACE for char in self._core)
        # The regex's atomic group: the run verbatim if it may come back so, else its pieces.
        self._whole = "" if _REPLACEMENT in self._core else self._core
        self._pieces = "".join(set(self._core)) + _REPLACEMENT

    def matches(self, found: str) -> bool:
        if not self._one_run:
            return self._regex.fullmatch(found) is not None
        rest = found.lstrip(_ASCII_SPACE) if self._space_before else found
        if self._whole and rest.startswith(self._whole):
            rest = rest[len(self._whole) :]
        else:
            taken = rest.lstrip(self._pieces)
            if len(taken) == len(rest):
                return False
            rest = taken
        return not (rest.strip(_ASCII_SPACE) if self._space_after else rest)

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(text_regex(self.text))


class TextPattern:
    """One text to find; ``search`` answers as ``re.search(text_regex(text), ...)`` would.

    The text's core, from its first to its last visible ASCII character, is found through
    the skeletons; a non-ASCII stretch before or after the core (a text that opens with
    "Łódź" or ends with an emoji) is checked with its own small regex in the prompt's
    stretch next to the core's match.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._skeleton: _Skeleton | None = None
        self._stretches: tuple[_Stretch, ...] = ()
        self._spaced = np.zeros(0, dtype=np.bool_)  # whitespace may precede skeleton char k
        self._lead: re.Pattern[str] | None = None
        self._trail: re.Pattern[str] | None = None
        begin, end = _core(text)
        core = text[begin:end]
        if not core or _PLACEHOLDER in core:
            return
        skeleton = _Skeleton.of(core)
        self._skeleton = skeleton
        self._spaced = np.zeros(len(skeleton.chars), dtype=np.bool_)
        self._spaced[skeleton.gaps] = True
        placeholders = np.frombuffer(skeleton.chars.encode(), np.uint8) == 0
        self._stretches = tuple(
            _Stretch(k, skeleton.stretch_at(k)) for k in np.flatnonzero(placeholders).tolist()
        )
        if begin:
            self._lead = re.compile(text_regex(text[:begin]))
        if end < len(text):
            self._trail = re.compile(text_regex(text[end:]))

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(text_regex(self.text))

    def search(self, haystack: Haystack, pos: int) -> tuple[int, int] | None:
        """(start, end) of the leftmost match starting at or after ``pos``, or None."""
        index = haystack.skeleton
        if self._skeleton is None or index is None:
            match = self.regex.search(haystack.text, pos)
            return None if match is None else match.span()
        chars = self._skeleton.chars
        at = int(np.searchsorted(index.positions, pos))
        while (at := index.chars.find(chars, at)) >= 0:
            if self._fits(index, at):
                span = self._ends(index, at, at + len(chars) - 1, pos)
                if span is not None:
                    return span
            at += 1
        return None

    def _fits(self, index: _Skeleton, at: int) -> bool:
        """Whether the skeleton match at ``at`` is a match of the text's core."""
        first, last = np.searchsorted(index.gaps, (at + 1, at + len(self._spaced)))
        if last > first and not self._spaced[index.gaps[first:last] - at].all():
            return False  # whitespace where the text has none
        return all(s.matches(index.stretch_at(at + s.at)) for s in self._stretches)

    def _ends(self, index: _Skeleton, at: int, last: int, pos: int) -> tuple[int, int] | None:
        """The whole match around the core's match at skeleton ``at``..``last``, if any."""
        start, end = int(index.positions[at]), int(index.positions[last]) + 1
        if self._lead is not None:
            # The leftmost place in the whitespace and non-ASCII run just before the core
            # from which the text's lead reaches the core, as the regex would start.
            if at == 0:
                run = 0
            else:
                before = int(index.positions[at - 1])
                run = before if index.chars[at - 1] == _PLACEHOLDER else before + 1
            text = index.text
            lead = self._lead
            reaches = (s for s in range(max(run, pos), start + 1) if lead.fullmatch(text, s, start))
            start = next(reaches, -1)
            if start < 0:
                return None
        if self._trail is not None:
            match = self._trail.match(index.text, end)
            if match is None:
                return None
            end = match.end()
        return start, end


def _code_points(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _core(text: str) -> tuple[int, int]:
    """Where the text's first visible ASCII character is, and just after its last one."""
    begin, end = 0, len(text)
    while begin < end and _loose(text[begin]):
        begin += 1
    while end > begin and _loose(text[end - 1]):
        end -= 1
    return begin, end


def _loose(char: str) -> bool:
    return char >= "\x80" or char in _ASCII_SPACE
