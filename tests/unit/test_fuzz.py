"""Hostile input: every decoder and parser ends in a value or in its own error, never a crash.

decode_event → ConversationEvent or a PoisonEventError subclass; parse_prompt_logprobs →
TokenStream or InferenceResponseError; locate_responses → spans or ResponseLocateError.
Any other exception, or a hang (pytest-timeout), is a bug. Inputs stay bounded so the
whole file runs in seconds.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit import vllm_shapes
from tests.unit.message_patterns import as_sent
from worker.errors import (
    EventDecodeError,
    EventTooLargeError,
    EventValidationError,
    InferenceResponseError,
    PoisonEventError,
    ResponseLocateError,
)
from worker.events import ConversationEvent, decode_event
from worker.inference.response import parse_prompt_logprobs
from worker.scoring.spans import locate_responses, response_segments
from worker.scoring.tokens import TokenStream

pytestmark = pytest.mark.timeout(60)

MAX_BYTES = 64 * 1024
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID_EVENT: dict[str, Any] = {
    "event_id": "evt-1",
    "conversation_id": "conv-1",
    "closed_at": "2025-03-01T12:30:00Z",
    "system_prompt": "You are a helpful assistant.",
    "entries": [
        {"type": "memory", "key": "pet", "content": "The user's dog is named Biscuit."},
        {"type": "message", "role": "user", "content": "What is my dog called?"},
        {"type": "message", "role": "assistant", "content": "Your dog is called Biscuit."},
    ],
}
VALID_BYTES = json.dumps(VALID_EVENT).encode()


def decodes_or_is_poison(payload: bytes, max_bytes: int = MAX_BYTES) -> ConversationEvent | None:
    """The decoder's whole contract: an event, or a PoisonEventError (None here)."""
    try:
        return decode_event(payload, max_bytes=max_bytes)
    except PoisonEventError:
        return None


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def with_field(value: object, field: str) -> dict[str, Any]:
    return {**VALID_EVENT, field: value}


# --- decode_event -------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_decode_or_are_poison(payload: bytes) -> None:
    decodes_or_is_poison(payload)


@FUZZ
@given(json_values)
def test_arbitrary_json_decodes_or_is_poison(value: object) -> None:
    # json.dumps writes NaN and Infinity literals, which JSON does not have.
    decodes_or_is_poison(json.dumps(value).encode())


@FUZZ
@given(
    st.sampled_from(sorted(VALID_EVENT)) | st.sampled_from(["model", "context_message"]),
    json_values,
)
def test_any_value_in_any_field_decodes_or_is_poison(field: str, value: object) -> None:
    decodes_or_is_poison(json.dumps(with_field(value, field)).encode())


entry_values = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["memory", "message"]) | json_values,
        "role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values,
        "key": st.text(max_size=10) | json_values,
        "content": st.text(max_size=30) | json_values,
    },
)


@FUZZ
@given(st.lists(entry_values | json_values, max_size=8))
def test_any_entries_decode_or_are_poison(entries: list[object]) -> None:
    decodes_or_is_poison(json.dumps(with_field(entries, "entries")).encode())


@FUZZ
@given(json_values, st.booleans(), st.booleans())
def test_any_cloudevents_envelope_decodes_or_is_poison(
    data: object, data_as_string: bool, with_id: bool
) -> None:
    envelope: dict[str, Any] = {"specversion": "1.0", "type": "t", "source": "/s"}
    envelope["data"] = json.dumps(data) if data_as_string else data
    if with_id:
        envelope["id"] = "ce-1"
    decodes_or_is_poison(json.dumps(envelope).encode())


@FUZZ
@given(st.integers(0, len(VALID_BYTES)), st.integers(0, 8), st.binary(min_size=0, max_size=8))
def test_spliced_valid_event_decodes_or_is_poison(at: int, cut: int, inserted: bytes) -> None:
    decodes_or_is_poison(VALID_BYTES[:at] + inserted + VALID_BYTES[at + cut :])


@FUZZ
@given(st.text(max_size=200))
def test_arbitrary_text_in_every_string_field_is_kept_verbatim(text: str) -> None:
    event = json.loads(VALID_BYTES)
    event["system_prompt"] = text
    event["entries"][2]["content"] = text
    decoded = decode_event(json.dumps(event).encode(), max_bytes=MAX_BYTES)
    assert (decoded.system_prompt, decoded.entries[2].content) == (text, text)


# Control characters (U+0000 among them) and lone surrogates, between ordinary ones.
hostile_text = st.text(st.characters(categories=["Cs", "Cc", "Ll", "Zs", "So"]), max_size=12)
# Each field, and whether it is stored (in PostgreSQL, which cannot hold U+0000).
STRING_FIELDS = {"event_id": True, "conversation_id": True, "model": True, "system_prompt": False}


@FUZZ
@given(st.sampled_from(sorted(STRING_FIELDS)), hostile_text)
@example("event_id", "\ud83d\ude00")
@example("system_prompt", "a\udfff")
def test_decoded_strings_are_whole_characters_and_stored_ones_hold_no_nul(
    field: str, text: str
) -> None:
    payload = json.dumps(with_field(text, field)).encode()  # surrogates as \\udXXX escapes
    text = json.loads(json.dumps(text))  # a high surrogate escape and a low one make one char
    refused = "\x00" in text and STRING_FIELDS[field]
    refused |= any(0xD800 <= ord(char) <= 0xDFFF for char in text)
    refused |= STRING_FIELDS[field] and not text
    outcome: tuple[str, object]
    try:
        outcome = ("kept", getattr(decode_event(payload, max_bytes=MAX_BYTES), field))
    except EventValidationError as error:
        outcome = ("refused", error.fields)
    assert outcome == (("refused", (field,)) if refused else ("kept", text))


NESTED = 100_000


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * NESTED,
        b"[" * NESTED + b"]" * NESTED,
        b'{"a":' * NESTED + b"1" + b"}" * NESTED,
        VALID_BYTES[:-1] + b', "extra": ' + b"[" * NESTED + b"]" * NESTED + b"}",
        json.dumps({"specversion": "1.0", "id": "x", "data": "[" * NESTED}).encode(),
        json.dumps({"specversion": "1.0", "id": "x", "data": "{}" + "]" * NESTED}).encode(),
    ],
    ids=["open", "balanced", "objects", "inside-event", "cloudevents-data", "trailing"],
)
def test_deep_nesting_is_poison(payload: bytes) -> None:
    with pytest.raises(PoisonEventError):
        decode_event(payload, max_bytes=len(payload))


@pytest.mark.parametrize(
    "literal", [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e999", b"nan", b"inf"]
)
def test_non_finite_number_literals_are_poison(literal: bytes) -> None:
    payload = VALID_BYTES.replace(b'"2025-03-01T12:30:00Z"', literal)
    with pytest.raises(PoisonEventError):
        decode_event(payload, max_bytes=MAX_BYTES)


def test_duplicate_json_keys_take_the_last_value() -> None:
    payload = b'{"event_id": "first", ' + VALID_BYTES[1:]
    assert decode_event(payload, max_bytes=MAX_BYTES).event_id == "evt-1"


@pytest.mark.parametrize("junk", [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])
def test_invalid_utf8_inside_a_string_is_a_decode_error(junk: bytes) -> None:
    payload = VALID_BYTES.replace(b"Biscuit.", b"Bis" + junk + b"cuit.", 1)
    with pytest.raises(EventDecodeError):
        decode_event(payload, max_bytes=MAX_BYTES)


def test_huge_string_is_decoded_whole() -> None:
    content = "Zoë " * 1_000_000
    payload = json.dumps(with_field(content, "system_prompt")).encode()
    assert decode_event(payload, max_bytes=len(payload)).system_prompt == content


def test_event_with_100k_entries_is_decoded() -> None:
    entries = [{"type": "message", "role": "user", "content": str(n)} for n in range(100_000)]
    payload = json.dumps(with_field(entries, "entries")).encode()
    assert len(decode_event(payload, max_bytes=len(payload)).entries) == 100_000


def test_event_with_100k_duplicate_memory_keys_is_poison() -> None:
    entries = [{"type": "memory", "key": "same", "content": ""} for _ in range(100_000)]
    payload = json.dumps(with_field(entries, "entries")).encode()
    with pytest.raises(PoisonEventError):
        decode_event(payload, max_bytes=len(payload))


def padded_to(size: int) -> bytes:
    """A valid event of exactly ``size`` bytes (padding in an ignored field)."""
    bare = json.dumps(with_field("", "padding")).encode()
    return json.dumps(with_field("x" * (size - len(bare)), "padding")).encode()


def test_event_of_exactly_max_bytes_is_decoded() -> None:
    assert decode_event(padded_to(MAX_BYTES), max_bytes=MAX_BYTES).event_id == "evt-1"


def test_event_one_byte_over_max_bytes_is_too_large() -> None:
    with pytest.raises(EventTooLargeError):
        decode_event(padded_to(MAX_BYTES + 1), max_bytes=MAX_BYTES)


# --- parse_prompt_logprobs ------------------------------------------------------------


def parses_or_is_response_error(body: bytes, **options: Any) -> TokenStream | None:
    try:
        stream = parse_prompt_logprobs(body, **options)
    except InferenceResponseError:
        return None
    # Whatever it returns must be usable as it is.
    assert len(stream.token_ids) == len(stream.logprobs) == len(stream.texts)
    assert all(math.isfinite(lp) and lp <= 0.0 for lp in stream.logprobs[1:])
    return stream


token_keys = (
    st.integers(-5, 2**70).map(str)
    | st.text(max_size=6)
    | st.sampled_from(["007", " 7", "7 ", "1_0", "-0", "٣", "9" * 5000])
)
logprob_entries = st.fixed_dictionaries(
    {},
    optional={
        "logprob": st.floats(allow_nan=True, allow_infinity=True) | json_scalars,
        "rank": st.integers(-3, 2**70) | json_scalars,
        "decoded_token": st.text(max_size=5) | json_scalars,
    },
)
positions = st.none() | st.dictionaries(token_keys, logprob_entries | json_values, max_size=4)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "prompt_logprobs": st.lists(positions, max_size=8) | json_values,
        "prompt_token_ids": st.lists(st.integers(-5, 2**70), max_size=8) | json_values,
        "usage": st.fixed_dictionaries({"prompt_tokens": st.integers(0, 10) | json_scalars})
        | json_values,
        "choices": json_values,
    },
)


@FUZZ
@given(st.binary(max_size=2_000), st.integers(0, 3))
def test_arbitrary_bytes_parse_or_are_a_response_error(body: bytes, k: int) -> None:
    parses_or_is_response_error(body, requested_k=k)


@FUZZ
@given(
    bodies,
    st.integers(0, 3),
    st.none() | st.lists(st.integers(-5, 2**70), max_size=8),
)
def test_wrong_bodies_parse_or_are_a_response_error(
    body: dict[str, Any], k: int, ids: list[int] | None
) -> None:
    parses_or_is_response_error(json.dumps(body).encode(), requested_k=k, prompt_token_ids=ids)


@FUZZ
@given(st.data())
def test_one_corrupted_position_of_a_real_body_parses_or_is_a_response_error(
    data: st.DataObject,
) -> None:
    texts = ["<|im_start|>", "user", "\n", "Hi", "<|im_end|>"]
    body = json.loads(vllm_shapes.body(texts, top_k=data.draw(st.integers(0, 2))))
    position = data.draw(st.integers(0, len(texts) - 1))
    body["prompt_logprobs"][position] = data.draw(positions | json_values)
    parses_or_is_response_error(json.dumps(body).encode(), requested_k=data.draw(st.integers(0, 3)))


@pytest.mark.parametrize(
    "body",
    [
        b'{"x": ' + b"[" * NESTED + b"]" * NESTED + b"}",
        b'{"prompt_logprobs": [null, ' + b"[" * NESTED + b"]}",
        b'{"prompt_logprobs": [null, {"1": {"logprob": NaN, "decoded_token": "a"}}]}',
        b'{"prompt_logprobs": [null, {"1": {"logprob": 1e999, "decoded_token": "a"}}]}',
        b'{"prompt_logprobs": [null, {"99999999999999999999": '
        b'{"logprob": -1, "decoded_token": "a"}}]}',
        b'{"prompt_logprobs": [null, {"1": {"logprob": -1, "decoded_token": "a"}}], '
        b'"prompt_token_ids": [99999999999999999999, 1]}',
        b'{"prompt_logprobs": [null, {}]}',
        b'{"prompt_logprobs": [null, {"1": null}]}',
    ],
    ids=[
        "deep-unknown-field",
        "deep-position",
        "nan",
        "overflow-to-inf",
        "id-over-int64-in-key",
        "id-over-int64-in-ids",
        "empty-position",
        "null-candidate",
    ],
)
def test_hostile_body_is_a_response_error(body: bytes) -> None:
    with pytest.raises(InferenceResponseError):
        parse_prompt_logprobs(body)


# --- locate_responses -----------------------------------------------------------------

FRAGMENTS = [
    "a",
    "Biscuit",
    "dog",
    " ",
    "  ",
    "\n",
    "\t",
    "\xa0",
    "\u3000",
    ".",
    "*",
    "+?",
    "(",
    ")",
    "[",
    "]",
    "^",
    "$",
    "\\",
    "|",
    "{2}",
    "é",
    "Łódź",
    "🐈",
    "\ufffd",
    "<think>",
    "</think>",
    "<|im_end|>",
    "user",
    "assistant",
]
contents = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=12).map("".join)
roles = st.sampled_from(["system", "user", "assistant", "tool"])
conversations = st.lists(st.tuples(roles, contents), min_size=1, max_size=6)


def found_or_locate_error(texts: list[str], messages: list[tuple[str, str]]) -> list[Any] | None:
    patterns = [as_sent(role, content) for role, content in messages]
    try:
        return locate_responses(texts, patterns)
    except ResponseLocateError:
        return None


@FUZZ
@given(conversations, st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=6), max_size=40))
def test_arbitrary_tokens_are_found_or_a_locate_error(
    messages: list[tuple[str, str]], texts: list[str]
) -> None:
    found_or_locate_error(texts, messages)


@FUZZ
@given(conversations)
@example([("assistant", "a\xa0b")])
@example([("assistant", "x <think>y</think> z")])
@example([("assistant", "a <think>b</think> c")])
def test_every_rendered_response_is_found(messages: list[tuple[str, str]]) -> None:
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    patterns = [as_sent(role, content) for role, content in messages]
    spans = locate_responses(texts, patterns)
    scored = [bool(response_segments(c)) for role, c in messages if role == "assistant"]
    assert [len(span) > 0 for span in spans] == scored


def test_many_split_characters_between_spaces_do_not_backtrack_for_ever() -> None:
    # Each "é" may come back whole or as U+FFFD pieces: runs separated by optional
    # whitespace must not try every way of sharing out a long stretch of U+FFFD.
    memory = "é " * 40 + "x"
    messages = [("system", "é" * 200), ("user", memory), ("assistant", "Yes.")]
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    patterns = [
        as_sent("system", ""),  # as the scorer does: not anchored
        as_sent("user", memory),
        as_sent("assistant", "Yes."),
    ]
    assert ["".join(texts[i] for i in span) for span in locate_responses(texts, patterns)] == [
        "Yes."
    ]


def located(messages: list[tuple[str, str]]) -> list[str]:
    texts = vllm_shapes.tokenize(vllm_shapes.chatml(messages))
    patterns = [as_sent(role, content) for role, content in messages]
    return ["".join(texts[i] for i in span) for span in locate_responses(texts, patterns)]


# Found by the properties above; each was a ResponseLocateError or a wrong location.
@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([("user", "q"), ("assistant", "a\xa0b")], ["a\ufffd\ufffdb"]),
        ([("user", "q"), ("assistant", "a\ufffda")], ["a\ufffd\ufffd\ufffda"]),
        ([("user", "q"), ("assistant", "\ufffd \ufffd")], ["\ufffd" * 3 + " " + "\ufffd" * 3]),
        ([("user", "q"), ("assistant", "Sure. <think>Check it.</think> Done.")], ["Sure. Done."]),
        (
            [
                ("user", "q"),
                ("assistant", "First. <think>Check the second part.</think> Second."),
                ("user", "You said First. and Second."),
            ],
            ["First. Second."],
        ),
        (
            [
                ("user", "q"),
                ("assistant", "<think>Say: Done.</think>Working. <think>ok</think> Done."),
            ],
            ["Working. Done."],
        ),
    ],
    ids=[
        "non-ascii-space",
        "replacement-character",
        "replacement-characters-apart",
        "text-before-reasoning",
        "interleaved-reasoning",
        "answer-quoted-in-a-later-reasoning-block",
    ],
)
def test_response_is_located_exactly(messages: list[tuple[str, str]], expected: list[str]) -> None:
    assert located(messages) == expected


# --- no response is located in the template's markup ----------------------------------

# Words of the templates' headers and special tokens, and the words around them.
HEADER_PIECES = ["a", "as", "is", "im", "start", "end", "header", "id", "eot", "begin", "of"]
HEADER_PIECES += ["text", "user", "assistant", "system", "tool", "ass", "istant", "t", "s"]
HEADER_PIECES += ["_", "|", "\n", "Biscuit", "."]
TEMPLATES = {"chatml": vllm_shapes.chatml, "llama3": vllm_shapes.llama3}
TEMPLATES["qwen3"] = vllm_shapes.qwen3
OPENERS = ("<|im_start|>", "<|start_header_id|>")
END_OF_TURN = ("<|im_end|>", "<|eot_id|>")
header_word_contents = st.lists(st.sampled_from(HEADER_PIECES), max_size=4).map(" ".join)
header_word_turns = st.lists(st.tuples(roles, header_word_contents), max_size=5)


def content_ranges(texts: list[str], turns: int) -> list[range]:
    """Each turn's content tokens: after its opener, role name, header end and newlines."""
    ranges = []
    openers = [i for i, text in enumerate(texts) if text in OPENERS]
    for opener in openers[:turns]:
        at = opener + 1
        while texts[at] not in ("\n", "<|end_header_id|>"):
            at += 1  # the role name, in one token or more
        at += texts[at] == "<|end_header_id|>"
        while texts[at] == "\n":
            at += 1
        end = at
        while texts[end] not in END_OF_TURN:
            end += 1
        ranges.append(range(at, end))
    return ranges


@FUZZ
@given(
    header_word_turns,
    st.sampled_from(sorted(TEMPLATES)),
    st.booleans(),
    st.booleans(),
)
@example([("assistant", "a")], "chatml", False, True)
@example([("assistant", "user")], "llama3", False, False)
def test_responses_are_their_own_turns_content_never_header_tokens(
    turns: list[tuple[str, str]], template: str, split_assistant: bool, first_token_text: bool
) -> None:
    messages = [("system", "Be brief."), ("user", "Go."), *turns]
    texts: list[str] = []
    for token in vllm_shapes.tokenize(TEMPLATES[template](messages)):
        # SmolLM2 cuts "assistant" in two.
        texts.extend(["ass", "istant"] if split_assistant and token == "assistant" else [token])
    expected = [
        list(turn)
        for turn, (role, _) in zip(content_ranges(texts, len(messages)), messages, strict=True)
        if role == "assistant"
    ]
    if not first_token_text:
        texts[0] = ""  # vLLM sends null for the prompt's first token
    patterns = [as_sent("system", ""), *(as_sent(r, c) for r, c in messages[1:])]
    assert [span.tolist() for span in locate_responses(texts, patterns)] == expected
