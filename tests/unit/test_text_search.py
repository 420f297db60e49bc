"""TextPattern finds what its regex finds, with or without compiling it."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.unit.test_fuzz import FUZZ
from worker.scoring.text_search import OTHER_SPACE_CODES, Haystack, TextPattern, text_regex

PIECES = [
    "a",
    "Biscuit",
    "dog",
    "s",
    " ",
    "  ",
    "\n",
    "\t",
    "\x0b",
    "\x1c",
    "\x00",
    "\xa0",
    "\x85",
    "\u3000",
    ".",
    "*",
    "\\",
    "(",
    "é",
    "ë",
    "Łódź",
    "🐈",
    "\ufffd",
    "\ud800",
]
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=3), max_size=10).map("".join)


def as_decoded(text: str, data: st.DataObject) -> str:
    """``text`` as a prompt may hold it: spaces lost, characters split into U+FFFD, noise."""
    out = []
    for char in text:
        if char in " \t\n" and data.draw(st.booleans()):
            out.append(data.draw(st.sampled_from(["", " ", "  ", "\n"])))
        elif not char.isascii() and data.draw(st.booleans()):
            out.append("\ufffd" * len(char.encode("utf-8", "surrogatepass")))
        else:
            out.append(char)
    return "".join(out)


def regex_span(text: str, haystack: str, pos: int) -> tuple[int, int] | None:
    match = re.compile(text_regex(text)).search(haystack, pos)
    return None if match is None else match.span()


@FUZZ
@given(texts, st.data())
@example("Zoë lives", None)
@example("a é b", None)
def test_search_agrees_with_the_regex(text: str, data: st.DataObject | None) -> None:
    if data is None:
        haystack, pos = f"x {text} y", 0
    else:
        needle = data.draw(st.sampled_from([text, text.strip()]))
        noise = data.draw(texts)
        haystack = data.draw(
            st.sampled_from(
                [
                    noise,
                    noise + as_decoded(needle, data) + noise,
                    as_decoded(needle, data) + noise + as_decoded(needle, data),
                ]
            )
        )
        text = needle
        pos = data.draw(st.integers(0, len(haystack) + 1))
    assert TextPattern(text).search(Haystack(haystack), pos) == regex_span(text, haystack, pos)


@pytest.mark.parametrize(
    ("text", "haystack", "span"),
    [
        ("Your dog", "<|im_start|>Your  dog<|im_end|>", (12, 21)),
        ("Your dog", "Yourdog", (0, 7)),
        ("Your dog", "You rdog", None),
        ("Zoë is here", "Zo\ufffd\ufffd is here", (0, 12)),
        ("Zoë is here", "Zoëë is here", None),  # verbatim first, then nothing else: atomic
        ("Zoë is here", "Zo\ufffdë is here", (0, 12)),
        ("a\xa0b", "a\xa0b", (0, 3)),  # non-ASCII space in the prompt: the regex decides
    ],
)
def test_search_finds_exactly(text: str, haystack: str, span: tuple[int, int] | None) -> None:
    assert TextPattern(text).search(Haystack(haystack), 0) == span


def test_a_long_text_is_found_without_compiling_its_regex() -> None:
    text = " ".join(["word"] * 5_000) + " Zoë."
    pattern = TextPattern(text)
    haystack = "x " + text.replace("ë", "\ufffd\ufffd")
    assert pattern.search(Haystack(haystack), 0) == (2, len(haystack))
    assert "regex" not in vars(pattern)  # the cached_property was never computed


def test_other_space_codes_are_what_re_takes_for_whitespace_beyond_ascii() -> None:
    spaces = [code for code in range(0x80, 0x110000) if re.fullmatch(r"\s", chr(code))]
    assert OTHER_SPACE_CODES.tolist() == spaces


def test_a_text_opening_and_closing_with_non_ascii_is_found_without_its_regex() -> None:
    text = "Łódź is " + "nice " * 1_000 + "🐈"
    haystack = "x " + text.replace("Ł", "\ufffd\ufffd").replace("🐈", "\ufffd" * 4)
    pattern = TextPattern(text)
    assert pattern.search(Haystack(haystack), 0) == regex_span(text, haystack, 0)
    assert "regex" not in vars(pattern)
