"""Locating assistant responses in the prompt's tokens, across chat templates."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit import vllm_shapes
from tests.unit.message_patterns import as_sent
from worker.errors import ResponseLocateError
from worker.scoring.spans import MessagePattern, locate_responses, response_segments
from worker.scoring.tokens import normalize_token_texts

CONVERSATION = [
    ("system", "You are a helpful assistant."),
    ("user", "[memory] The user's dog is named Biscuit."),
    ("user", "What is my dog called? Ask the assistant."),
    ("assistant", "Your dog is called Biscuit."),
    ("user", "And where do I live?"),
    ("assistant", "  I don't know where you live.  "),
]


def located_texts(texts: list[str], messages: list[tuple[str, str]]) -> list[str]:
    patterns = [as_sent(role, content) for role, content in messages]
    return ["".join(texts[i] for i in span) for span in locate_responses(texts, patterns)]


@pytest.mark.parametrize("template", [vllm_shapes.chatml, vllm_shapes.llama3, vllm_shapes.qwen3])
def test_responses_are_found_in_each_template(template: object) -> None:
    texts = vllm_shapes.tokenize(template(CONVERSATION))  # type: ignore[operator]
    assert located_texts(texts, CONVERSATION) == [
        "Your dog is called Biscuit.",
        "I don't know where you live.",
    ]


def test_smollm2_split_assistant_header_does_not_matter() -> None:
    texts: list[str] = []
    for token in vllm_shapes.tokenize(vllm_shapes.chatml(CONVERSATION)):
        texts.extend(["ass", "istant"] if token == "assistant" else [token])
    assert located_texts(texts, CONVERSATION)[0] == "Your dog is called Biscuit."


def test_role_header_and_end_of_turn_are_not_part_of_the_response() -> None:
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(CONVERSATION))
    patterns = [as_sent(r, c) for r, c in CONVERSATION]
    span = locate_responses(texts, patterns)[0]
    assert [texts[i] for i in span] == ["Your", " dog", " is", " called", " Biscuit", "."]


def test_answer_quoted_in_an_earlier_user_message_is_not_mistaken_for_it() -> None:
    messages = [
        ("system", "Be brief."),
        ("user", "Say exactly: Your dog is called Biscuit."),
        ("assistant", "Your dog is called Biscuit."),
    ]
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    span = locate_responses(texts, [as_sent(r, c) for r, c in messages])[0]
    # The response's tokens come after the user's quote of the same words.
    assert min(span) > texts.index("<|im_start|>", 5)


def test_think_block_of_the_last_turn_is_excluded_and_earlier_ones_are_dropped() -> None:
    messages = [
        ("system", "Think first."),
        ("user", "Dog's name?"),
        ("assistant", "<think>The memory says Biscuit.</think>Biscuit."),
        ("user", "Cat's name?"),
        ("assistant", "<think>\nThe answer is Zoe, Zoe.\n</think>\n\nZoe."),
    ]
    rendered = vllm_shapes.qwen3(messages)
    assert "The memory says" not in rendered  # the template dropped the first reasoning
    texts = vllm_shapes.tokenize(rendered)
    assert located_texts(texts, messages) == ["Biscuit.", "Zoe."]


def test_non_ascii_split_into_replacement_characters_is_found() -> None:
    messages = [
        ("system", "s"),
        ("user", "Where does Zoë live?"),
        ("assistant", "Zoë lives in Łódź 🐈."),
    ]
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    assert "\ufffd" in texts
    found = located_texts(texts, messages)[0]
    assert found.startswith("Zo\ufffd\ufffd lives in \ufffd")
    assert found.endswith("\ufffd.")


def test_legacy_byte_level_pieces_are_decoded() -> None:
    pieces = [
        "<|im_start|>",
        "assistant",
        "Ċ",
        "Your",
        "Ġdog",
        "Ġis",
        "ĠBiscuit",
        ".",
        "<|im_end|>",
    ]
    texts = normalize_token_texts(pieces)
    assert "".join(texts) == "<|im_start|>assistant\nYour dog is Biscuit.<|im_end|>"


def test_legacy_sentencepiece_pieces_are_decoded() -> None:
    pieces = ["<s>", "▁Your", "▁dog", "▁is", "▁Biscuit", ".", "<0x0A>"]
    assert "".join(normalize_token_texts(pieces)) == "<s> Your dog is Biscuit.\n"


def test_pieces_without_their_spaces_still_match() -> None:
    # Some releases decode SentencePiece tokens one by one and lose the spaces.
    texts = ["<|im_start|>", "assistant", "\n", "Your", "dog", "is", "Biscuit", ".", "<|im_end|>"]
    patterns = [as_sent("assistant", "Your dog is Biscuit.")]
    assert [len(s) for s in locate_responses(texts, patterns)] == [5]


def test_missing_response_raises_an_error_naming_it() -> None:
    messages = [("system", "s"), ("user", "q"), ("assistant", "Biscuit."), ("assistant", "Rex.")]
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages[:3]))
    with pytest.raises(ResponseLocateError, match="response 1") as info:
        locate_responses(texts, [as_sent(r, c) for r, c in messages])
    assert info.value.response_index == 1


@pytest.mark.parametrize(
    ("content", "segments"),
    [
        ("plain", ["plain"]),
        ("<think>x</think>answer", ["answer"]),
        ("  <think>a\nb</think>\n\n answer  ", ["answer"]),
        ("<think>only reasoning</think>", []),
        ("before <think>x</think> after", ["before", "after"]),
    ],
)
def test_response_segments_leave_out_reasoning(content: str, segments: list[str]) -> None:
    assert response_segments(content) == segments


# --- short answers are found in their own content, never in the template's markup ------


def smollm2(messages: list[tuple[str, str]]) -> list[str]:
    """ChatML as SmolLM2's tokenizer cuts it: "assistant" is two tokens, "ass" + "istant"."""
    texts: list[str] = []
    for token in vllm_shapes.tokenize(vllm_shapes.chatml(messages)):
        texts.extend(["ass", "istant"] if token == "assistant" else [token])
    return texts


TOKENIZED: dict[str, Callable[[list[tuple[str, str]]], list[str]]] = {
    "chatml": lambda messages: vllm_shapes.tokenize(vllm_shapes.chatml(messages)),
    "smollm2": smollm2,
    "llama3": lambda messages: vllm_shapes.tokenize(vllm_shapes.llama3(messages)),
    "qwen3": lambda messages: vllm_shapes.tokenize(vllm_shapes.qwen3(messages)),
}
END_OF_TURN = {"chatml": "<|im_end|>", "smollm2": "<|im_end|>", "llama3": "<|eot_id|>"}
END_OF_TURN["qwen3"] = "<|im_end|>"
# Words that occur in some template's headers or special tokens.
HEADER_WORDS = ["a", "as", "is", "user", "assistant", "system", "im", "start", "end", "header"]
HEADER_WORDS += ["id", "of", "text", "begin", "eot", "ass", "istant", "t"]


def short_answer_conversation(answer: str) -> list[tuple[str, str]]:
    return [
        ("system", "Be brief."),
        ("user", "One word?"),
        ("assistant", answer),
        ("user", "Again?"),
        ("assistant", answer),
    ]


def scorer_patterns(messages: list[tuple[str, str]]) -> list[MessagePattern]:
    # As the scorer sends them: the system prompt is not anchored.
    return [as_sent("system", ""), *(as_sent(r, c) for r, c in messages[1:])]


def surroundings(texts: list[str], span: object) -> tuple[str, str, str]:
    """The token before a span, the span's text and the token after it."""
    indices = list(span)  # type: ignore[call-overload]
    inside = "".join(texts[i] for i in indices)
    return texts[indices[0] - 1], inside, texts[indices[-1] + 1]


@pytest.mark.parametrize("answer", HEADER_WORDS)
@pytest.mark.parametrize("template", sorted(TOKENIZED))
def test_short_answer_is_located_in_its_own_content(template: str, answer: str) -> None:
    messages = short_answer_conversation(answer)
    texts = TOKENIZED[template](messages)
    spans = locate_responses(texts, scorer_patterns(messages))
    assert [surroundings(texts, span) for span in spans] == [
        ("\n", answer, END_OF_TURN[template])
    ] * 2


@pytest.mark.parametrize("answer", HEADER_WORDS)
@pytest.mark.parametrize("template", sorted(TOKENIZED))
def test_short_answer_is_located_when_the_first_token_has_no_text(
    template: str, answer: str
) -> None:
    # vLLM sends null for the prompt's first token: the text starts with "system\n".
    messages = short_answer_conversation(answer)
    texts = TOKENIZED[template](messages)
    texts[0] = ""
    spans = locate_responses(texts, scorer_patterns(messages))
    assert [surroundings(texts, span) for span in spans] == [
        ("\n", answer, END_OF_TURN[template])
    ] * 2


@pytest.mark.parametrize("answer", ["user", "system", "assistant", "a", "is"])
def test_short_answer_is_not_taken_from_an_earlier_unanchored_message(answer: str) -> None:
    # The user's message is not anchored (as if the template had altered it), so the
    # search for the answer starts before the user's turn: it must start at its own header.
    messages = [("system", "s"), ("user", answer), ("assistant", answer)]
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    patterns = [as_sent("system", ""), as_sent("user", ""), as_sent("assistant", answer)]
    span = locate_responses(texts, patterns)[0]
    turns = [i for i, text in enumerate(texts) if text == "<|im_start|>"]
    assert turns[2] < min(span) < turns[3]  # inside the third turn, the answer's


# --- a message is a response only when the caller says so ------------------------------


def test_assistant_role_message_that_is_no_response_is_only_an_anchor() -> None:
    # A memory sent with role "assistant": rendered like an answer, never scored.
    messages = [("system", "s"), ("assistant", "Your dog is Biscuit."), ("user", "Dog?")]
    messages.append(("assistant", "Biscuit."))
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    patterns = [as_sent(r, c) for r, c in messages]
    patterns[1] = MessagePattern.for_message(*messages[1], is_response=False)
    located = ["".join(texts[i] for i in span) for span in locate_responses(texts, patterns)]
    assert located == ["Biscuit."]
