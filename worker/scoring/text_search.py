"""Find a message's text in the prompt's joined token texts, tolerating per-token decoding.

A text's regex (`text_regex`) is the text itself, with optional whitespace wherever the text
has whitespace and, for each run of non-ASCII characters, the run or its U+FFFD pieces.
Compiling it costs the re module's pure-Python parser about a microsecond per character — more
than parsing the server's whole response — and every conversation brings new texts. So
`TextPattern` finds the same match without it: when the prompt holds no whitespace but ASCII's,
that regex cannot backtrack over a visible ASCII character, so a match is a substring match of
two skeletons (the texts without whitespace, each stretch of non-ASCII characters and the
whitespace around them shrunk to one placeholder), checked where the prompt has whitespace and
stretch by stretch. Texts that begin or end with anything but visible ASCII, and prompts with
other whitespace, are searched with the regex itself."""

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
    """One text to find; ``search`` answers as ``re.search(text_regex(text), ...)`` would."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._skeleton: _Skeleton | None = None
        self._stretches: tuple[_Stretch, ...] = ()
        self._spaced = np.zeros(0, dtype=np.bool_)  # whitespace may precede skeleton char k
        if _literal_search_applies(text):
            skeleton = _Skeleton.of(text)
            self._skeleton = skeleton
            self._spaced = np.zeros(len(skeleton.chars), dtype=np.bool_)
            self._spaced[skeleton.gaps] = True
            placeholders = np.frombuffer(skeleton.chars.encode(), np.uint8) == 0
            self._stretches = tuple(
                _Stretch(k, skeleton.stretch_at(k)) for k in np.flatnonzero(placeholders).tolist()
            )

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
                last = at + len(chars) - 1
                return int(index.positions[at]), int(index.positions[last]) + 1
            at += 1
        return None

    def _fits(self, index: _Skeleton, at: int) -> bool:
        """Whether the skeleton match at ``at`` is a match of the text itself."""
        first, last = np.searchsorted(index.gaps, (at + 1, at + len(self._spaced)))
        if last > first and not self._spaced[index.gaps[first:last] - at].all():
            return False  # whitespace where the text has none
        return all(s.matches(index.stretch_at(at + s.at)) for s in self._stretches)


def _code_points(text: str) -> npt.NDArray[np.uint32]:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _literal_search_applies(text: str) -> bool:
    """Text that begins and ends with a visible ASCII character and holds no NUL."""
    return (
        bool(text)
        and text[0].isascii()
        and text[-1].isascii()
        and text[0] not in _ASCII_SPACE
        and text[-1] not in _ASCII_SPACE
        and _PLACEHOLDER not in text
    )
