"""Chat-template markup: where no message's text can be, and where answers' turns begin."""

from __future__ import annotations

import pytest

from worker.scoring.headers import Markup

CHATML = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nas is<|im_end|>\n"
LLAMA3 = (
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nas is<|eot_id|>"
)
GEMMA = "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nas is<end_of_turn>\n"
PHI3 = "<|user|>\nHi<|end|>\n<|assistant|>\nas is<|end|>\n"
DEEPSEEK = "<\uff5cUser\uff5c>Hi<\uff5cAssistant\uff5c>as is<\uff5cend\u2581of\u2581sentence\uff5c>"
NO_FIRST_TOKEN = "system\nBe brief.<|im_end|>\n<|im_start|>assistant\nas is<|im_end|>\n"


def allowed(text: str, found: str, occurrence: int = 0) -> bool:
    """Whether the ``occurrence``-th place where ``found`` is in ``text`` may be a message."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(found, start + 1)
    return Markup.of(text).allows(start, start + len(found))


@pytest.mark.parametrize(
    ("text", "found", "occurrence"),
    [
        (CHATML, "im", 0),  # inside <|im_start|>
        (CHATML, "a", 0),  # inside <|im_start|>
        (CHATML, "user", 0),  # the role name
        (CHATML, "as", 0),  # the start of the role name
        (CHATML, "istant", 0),  # the end of the role name
        (LLAMA3, "of", 0),  # inside <|begin_of_text|>
        (LLAMA3, "header", 1),  # inside <|end_header_id|>
        (LLAMA3, "assistant", 0),
        (GEMMA, "model", 0),
        (PHI3, "assistant", 0),  # inside the special token that is the header
        (DEEPSEEK, "end", 0),  # inside its end-of-sentence token
        (NO_FIRST_TOKEN, "system", 0),  # vLLM sent no text for the <|im_start|> before it
    ],
)
def test_markup_is_never_a_message(text: str, found: str, occurrence: int) -> None:
    assert allowed(text, found, occurrence) is False


@pytest.mark.parametrize(
    ("text", "found"),
    [
        (CHATML, "as is"),
        (CHATML, "Hi"),
        (LLAMA3, "as is"),
        (GEMMA, "as is"),
        (PHI3, "as is"),
        (DEEPSEEK, "as is"),
        (NO_FIRST_TOKEN, "Be brief."),
        ("<|im_start|>user\nsay <|im_end|> now<|im_end|>", "say <|im_end|> now"),
        ("<|im_start|>user\nuser<|im_end|>", "user"),
    ],
    ids=[
        "chatml",
        "chatml-user",
        "llama3",
        "gemma",
        "phi3",
        "deepseek",
        "no-first-token",
        "whole-token",
        "role-word-as-content",
    ],
)
def test_content_is_allowed(text: str, found: str) -> None:
    assert allowed(text, found, text.count(found) - 1) is True


@pytest.mark.parametrize(
    ("text", "answer_starts_with"),
    [
        (CHATML, "\nas is"),
        (LLAMA3, "<|end_header_id|>\n\nas is"),
        (GEMMA, "\nas is"),
        (PHI3, "\nas is"),
        (DEEPSEEK, "as is"),
        (NO_FIRST_TOKEN, "\nas is"),
    ],
    ids=["chatml", "llama3", "gemma", "phi3", "deepseek", "no-first-token"],
)
def test_answer_header_ends_where_the_answers_turn_continues(
    text: str, answer_starts_with: str
) -> None:
    end = Markup.of(text).after_answer_header(0)
    assert text[end:].startswith(answer_starts_with)


def test_without_an_answer_header_ahead_the_position_is_kept() -> None:
    assert Markup.of(CHATML).after_answer_header(len(CHATML) - 3) == len(CHATML) - 3
