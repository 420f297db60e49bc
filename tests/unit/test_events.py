"""Decoding conversation-closed events (schema v1), and the JSON Schema that documents them."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from worker.errors import (
    EventDecodeError,
    EventTooLargeError,
    EventValidationError,
    PoisonEventError,
)
from worker.events import ConversationEvent, MemoryEntry, MessageEntry, decode_event
from worker.events.json_schema import SCHEMA_PATH, conversation_closed_schema, render

MAX_BYTES = 1 << 20
SECRET = "Zoë-lives-at-12-Rue-Secrète"  # stands for personal data: never in an error message


def v1_event() -> dict[str, Any]:
    return {
        "event_id": "evt-1",
        "conversation_id": "conv-1",
        "closed_at": "2025-03-01T12:30:00Z",
        "model": "Qwen/Qwen3-8B",
        "system_prompt": "You are a helpful assistant.",
        "context_message": "Today is Saturday.",
        "entries": [
            {"type": "memory", "key": "pet", "content": "The user's dog is named Biscuit."},
            {"type": "message", "role": "user", "content": "What is my dog called?"},
            {"type": "message", "role": "assistant", "content": "Your dog is called Biscuit."},
            {"type": "memory", "key": "home", "role": "system", "content": "Lives in Łódź."},
            {"type": "message", "role": "tool", "content": '{"weather": "rain"}'},
        ],
    }


def minimal_event() -> dict[str, Any]:
    return {"event_id": "e", "conversation_id": "c", "system_prompt": "", "entries": []}


def cloudevent(data: object, **attributes: object) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "ce-42",
        "type": "ai.agent.conversation.closed",
        "source": "/agents/7",
        "datacontenttype": "application/json",
        "data": data,
        **attributes,
    }


def encode(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def decode(obj: object) -> ConversationEvent:
    return decode_event(encode(obj), max_bytes=MAX_BYTES)


def _step(node: Any, part: str) -> tuple[Any, Any]:
    return node, int(part) if isinstance(node, list) else part


def _parent(event: dict[str, Any], path: str) -> tuple[Any, Any]:
    *parents, last = path.split(".")
    node: Any = event
    for part in parents:
        container, key = _step(node, part)
        node = container[key]
    return _step(node, last)


def replaced(event: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    """A deep copy of ``event`` with the field at ``path`` (``entries.2.content``) set."""
    out = copy.deepcopy(event)
    node, key = _parent(out, path)
    node[key] = value
    return out


def removed(event: dict[str, Any], path: str) -> dict[str, Any]:
    """A deep copy of ``event`` without the field at ``path``."""
    out = copy.deepcopy(event)
    node, key = _parent(out, path)
    del node[key]
    return out


# --- the v1 object -----------------------------------------------------------------


def test_v1_object_decodes_to_its_fields() -> None:
    event = decode(v1_event())
    assert (event.event_id, event.conversation_id, event.model, event.system_prompt) == (
        "evt-1",
        "conv-1",
        "Qwen/Qwen3-8B",
        "You are a helpful assistant.",
    )


def test_entries_keep_their_order_and_kinds() -> None:
    event = decode(v1_event())
    assert [type(e) for e in event.entries] == [
        MemoryEntry,
        MessageEntry,
        MessageEntry,
        MemoryEntry,
        MessageEntry,
    ]


def test_memory_and_response_indices_follow_the_entries() -> None:
    event = decode(v1_event())
    assert (event.memory_indices, event.response_indices) == ([0, 3], [2])


def test_minimal_event_takes_the_defaults() -> None:
    event = decode(minimal_event())
    assert (event.closed_at, event.model, event.context_message, event.entries) == (
        None,
        None,
        None,
        [],
    )


def test_memory_role_defaults_to_user() -> None:
    entry = decode(v1_event()).entries[0]
    assert isinstance(entry, MemoryEntry)
    assert entry.role == "user"


def test_memory_role_given_is_kept() -> None:
    entry = decode(v1_event()).entries[3]
    assert isinstance(entry, MemoryEntry)
    assert entry.role == "system"


def test_unknown_fields_are_ignored_at_every_level() -> None:
    event = v1_event()
    event["schema_version"] = 1
    event["agent"] = {"name": "helper", "tags": ["a"]}
    event["entries"][0]["embedding"] = [0.1, 0.2]
    event["entries"][1]["timestamp"] = "2025-03-01T12:00:00Z"
    assert decode(event) == decode(v1_event())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-03-01T12:30:00Z", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        ("2025-03-01T12:30:00.250Z", datetime(2025, 3, 1, 12, 30, 0, 250_000, tzinfo=UTC)),
        (
            "2025-03-01T14:30:00+02:00",
            datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-03-01t12:30:00z", datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
    ],
)
def test_closed_at_is_read_as_rfc3339(text: str, expected: datetime) -> None:
    assert decode(replaced(v1_event(), "closed_at", text)).closed_at == expected


def test_closed_at_keeps_the_instant_whatever_the_offset() -> None:
    utc = decode(replaced(v1_event(), "closed_at", "2025-03-01T12:30:00Z")).closed_at
    offset = decode(replaced(v1_event(), "closed_at", "2025-03-01T14:30:00+02:00")).closed_at
    assert utc == offset


def test_closed_at_that_is_not_a_timestamp_is_rejected_without_echoing_it() -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), "closed_at", SECRET))
    assert (info.value.fields, SECRET in info.value.message) == (("closed_at",), False)


# --- CloudEvents 1.0 structured mode ----------------------------------------------


def test_cloudevents_envelope_is_unwrapped() -> None:
    expected = decode(v1_event()).model_copy(update={"source": "/agents/7"})
    assert decode(cloudevent(v1_event())) == expected


def test_cloudevents_id_becomes_the_event_id_when_data_has_none() -> None:
    assert decode(cloudevent(removed(v1_event(), "event_id"))).event_id == "ce-42"


def test_event_id_in_data_wins_over_the_cloudevents_id() -> None:
    assert decode(cloudevent(v1_event())).event_id == "evt-1"


def test_cloudevents_data_sent_as_a_json_string_is_decoded() -> None:
    data = json.dumps(removed(v1_event(), "event_id"))
    assert decode(cloudevent(data)).event_id == "ce-42"


def test_cloudevents_extension_attributes_are_ignored() -> None:
    envelope = cloudevent(v1_event(), traceparent="00-abc-def-01", partitionkey="conv-1")
    assert decode(envelope) == decode(cloudevent(v1_event()))


@pytest.mark.parametrize(
    "data",
    [None, [1, 2], 7, f"not json {SECRET}", "[" * 5000],
    ids=["null", "array", "number", "string-not-json", "string-nested-too-deeply"],
)
def test_cloudevents_data_that_is_no_object_is_rejected_naming_data(data: object) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(cloudevent(data))
    assert (info.value.fields, SECRET in info.value.message) == (("data",), False)


def test_cloudevents_envelope_without_data_is_rejected_naming_data() -> None:
    envelope = cloudevent(None)
    del envelope["data"]
    with pytest.raises(EventValidationError) as info:
        decode(envelope)
    assert info.value.fields == ("data",)


def test_cloudevents_id_that_is_not_a_string_does_not_become_the_event_id() -> None:
    with pytest.raises(EventValidationError) as info:
        decode(cloudevent(removed(v1_event(), "event_id"), id=12345))
    assert info.value.fields == ("event_id",)


# --- the event's source: CloudEvents ids are unique only within it ------------------


def test_cloudevents_source_becomes_the_events_source() -> None:
    assert decode(cloudevent(v1_event())).source == "/agents/7"


def test_bare_object_has_no_source() -> None:
    assert decode(v1_event()).source is None


@pytest.mark.parametrize("value", ["/agents/9", 42, "", None], ids=str)
def test_source_field_of_a_bare_object_is_ignored_as_before(value: object) -> None:
    assert decode({**v1_event(), "source": value}).source is None


def test_source_inside_cloudevents_data_does_not_replace_the_envelopes() -> None:
    assert decode(cloudevent({**v1_event(), "source": "/forged"})).source == "/agents/7"


def test_cloudevents_envelope_without_source_decodes_as_a_bare_object_would() -> None:
    envelope = cloudevent(v1_event())
    del envelope["source"]
    assert decode(envelope).source is None


def test_same_id_from_two_sources_is_two_events() -> None:
    events = [decode(cloudevent(v1_event(), source=f"/agents/{n}")) for n in (1, 2)]
    assert {(e.source, e.event_id) for e in events} == {
        ("/agents/1", "evt-1"),
        ("/agents/2", "evt-1"),
    }


@pytest.mark.parametrize(
    "value",
    [42, "", SECRET * 40, f"{SECRET}\x00", [SECRET]],
    ids=["number", "empty", "too-long", "nul", "list"],
)
def test_cloudevents_source_that_cannot_be_stored_is_rejected_naming_it(value: object) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(cloudevent(v1_event(), source=value))
    assert (info.value.fields, SECRET in info.value.message) == (("source",), False)


# --- text the database cannot store, or no UTF-8 body can carry ----------------------

STORED = ["event_id", "conversation_id", "model", "entries.0.key", "entries.3.key"]
FREE_TEXT = ["system_prompt", "context_message", "entries.0.content", "entries.2.content"]


@pytest.mark.parametrize("path", STORED)
def test_nul_in_a_stored_string_is_rejected_naming_the_field(path: str) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), path, f"{SECRET}\x00{SECRET}"))
    assert (info.value.fields, SECRET in info.value.message) == ((path,), False)


def test_nul_is_refused_for_what_the_database_cannot_store() -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), "event_id", "evt\x00"))
    assert info.value.message == (
        "event does not match schema v1: event_id: "
        "must not hold U+0000 (NUL), which the database cannot store"
    )


@pytest.mark.parametrize("path", FREE_TEXT)
def test_nul_in_free_text_is_kept_since_it_is_never_stored(path: str) -> None:
    event = decode(replaced(v1_event(), path, "a\x00b"))
    node, key = _parent(event.model_dump(), path)
    assert node[key] == "a\x00b"


def escaped(obj: object) -> bytes:
    """JSON with every non-ASCII character escaped, as a lone surrogate must be."""
    return json.dumps(obj, ensure_ascii=True).encode()


@pytest.mark.parametrize("surrogate", [chr(0xD800), chr(0xDFFF)], ids=["high", "low"])
@pytest.mark.parametrize("path", STORED + FREE_TEXT)
def test_lone_surrogate_in_any_string_is_rejected_naming_the_field(
    path: str, surrogate: str
) -> None:
    payload = escaped(replaced(v1_event(), path, f"{SECRET}{surrogate}{SECRET}"))
    with pytest.raises(EventValidationError) as info:
        decode_event(payload, max_bytes=MAX_BYTES)
    assert (info.value.fields, SECRET in info.value.message) == ((path,), False)


def test_lone_surrogate_is_named_as_such() -> None:
    payload = escaped(replaced(v1_event(), "entries.2.content", "\ud800"))
    with pytest.raises(EventValidationError) as info:
        decode_event(payload, max_bytes=MAX_BYTES)
    assert info.value.message == (
        "event does not match schema v1: entries.2.content: "
        "must not hold a lone UTF-16 surrogate (U+D800 to U+DFFF)"
    )


def test_lone_surrogate_in_the_cloudevents_source_is_rejected_naming_it() -> None:
    payload = escaped(cloudevent(v1_event(), source="/agents/\ud800"))
    with pytest.raises(EventValidationError) as info:
        decode_event(payload, max_bytes=MAX_BYTES)
    assert info.value.fields == ("source",)


def test_lone_surrogate_in_an_ignored_field_is_still_not_json() -> None:
    payload = escaped({**v1_event(), "note": "\ud800"})
    with pytest.raises(EventDecodeError, match="lone UTF-16 surrogate"):
        decode_event(payload, max_bytes=MAX_BYTES)


def test_surrogate_pair_is_one_character() -> None:
    payload = escaped(replaced(v1_event(), "entries.2.content", "\U0001f408"))
    assert decode_event(payload, max_bytes=MAX_BYTES).entries[2].content == "\U0001f408"


def test_escape_does_not_make_other_invalid_json_acceptable() -> None:
    with pytest.raises(EventDecodeError):
        decode_event(b'{"event_id": "\\u00e9", "n": NaN}', max_bytes=MAX_BYTES)


@pytest.mark.parametrize("path", ["system_prompt", "entries.2.content", "event_id"])
def test_model_refuses_a_lone_surrogate_when_built_from_python(path: str) -> None:
    with pytest.raises(ValidationError):
        ConversationEvent.model_validate(replaced(v1_event(), path, "\ud800"))


# --- schema errors name the field, never the value ----------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "event_id",
        "conversation_id",
        "system_prompt",
        "entries",
        "entries.0.key",
        "entries.0.content",
        "entries.0.type",
        "entries.1.role",
        "entries.2.content",
    ],
)
def test_missing_required_field_is_named(path: str) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(removed(v1_event(), path))
    assert (info.value.fields, f"{path}: " in info.value.message) == ((path,), True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("event_id", 987654321),
        ("event_id", SECRET * 40),
        ("conversation_id", [SECRET]),
        ("system_prompt", {"text": SECRET}),
        ("context_message", 31337),
        ("closed_at", [SECRET]),
        ("entries", SECRET),
        ("entries", {"0": SECRET}),
        ("entries.1", SECRET),
        ("entries.0.key", SECRET * 40),
        ("entries.0.role", SECRET),
        ("entries.1.role", SECRET),
        ("entries.1.role", None),
        ("entries.2.content", 424242),
        ("entries.2.content", [SECRET]),
        ("entries.2.content", None),
        ("entries.2.type", SECRET),
        ("entries.2.type", 55555),
    ],
)
def test_wrongly_typed_field_is_named_and_its_value_not_echoed(path: str, value: object) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), path, value))
    shown = json.dumps(value, ensure_ascii=False).strip('"')
    assert (info.value.fields, shown in info.value.message) == ((path,), False)


@pytest.mark.parametrize("path", ["event_id", "conversation_id", "model", "entries.0.key"])
def test_empty_identifier_is_rejected(path: str) -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), path, ""))
    assert info.value.fields == (path,)


def test_message_names_the_field_it_blames() -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), "entries.2.content", 5))
    assert info.value.message == (
        "event does not match schema v1: entries.2.content: Input should be a valid string"
    )


def test_strict_types_refuse_coercion_of_numbers_to_strings() -> None:
    with pytest.raises(EventValidationError) as info:
        decode(replaced(v1_event(), "conversation_id", 12))
    assert info.value.fields == ("conversation_id",)


def test_up_to_five_errors_are_all_shown() -> None:
    event = v1_event()
    for index in range(len(event["entries"])):
        event["entries"][index]["content"] = index
    with pytest.raises(EventValidationError) as info:
        decode(event)
    assert (len(info.value.fields), "more)" in info.value.message) == (5, False)


def test_more_than_five_errors_are_counted_not_shown() -> None:
    event = v1_event()
    event["entries"] = [{"type": "message", "role": "user", "content": n} for n in range(8)]
    with pytest.raises(EventValidationError) as info:
        decode(event)
    assert (len(info.value.fields), info.value.message.endswith("(+3 more)")) == (8, True)


def test_duplicate_memory_keys_are_rejected_naming_both_entries() -> None:
    event = v1_event()
    event["entries"][3]["key"] = event["entries"][0]["key"] = SECRET
    with pytest.raises(EventValidationError) as info:
        decode(event)
    message = info.value.message
    assert ("entries.3.key repeats the key of entries.0" in message, SECRET in message) == (
        True,
        False,
    )


# --- bytes that are not a JSON object -------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b'{"event_id": }', b"{'a': 1}", b"NaN", b'{"a": Infinity}', b"\x00\x01"],
    ids=["empty", "unclosed", "missing-value", "single-quotes", "nan", "infinity", "binary"],
)
def test_invalid_json_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(payload, max_bytes=MAX_BYTES)


@pytest.mark.parametrize(
    "payload",
    [b'{"event_id": "\xff"}', b"\xc3\x28", b'{"a": "\xed\xa0\x80"}'],
    ids=["invalid-byte", "bad-continuation", "encoded-surrogate"],
)
def test_invalid_utf8_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(EventDecodeError):
        decode_event(payload, max_bytes=MAX_BYTES)


def test_nesting_too_deep_is_a_decode_error() -> None:
    with pytest.raises(EventDecodeError, match="nested too deeply"):
        decode_event(b"[" * 100_000, max_bytes=MAX_BYTES)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"[]", "list"), (b'"event"', "str"), (b"42", "int"), (b"null", "NoneType")],
)
def test_top_level_that_is_not_an_object_is_a_validation_error(payload: bytes, kind: str) -> None:
    with pytest.raises(EventValidationError) as info:
        decode_event(payload, max_bytes=MAX_BYTES)
    assert (info.value.fields, info.value.message) == (
        ("<root>",),
        f"event must be a JSON object, not {kind}",
    )


def test_event_over_max_bytes_is_too_large() -> None:
    payload = encode(v1_event())
    with pytest.raises(EventTooLargeError) as info:
        decode_event(payload, max_bytes=len(payload) - 1)
    assert (info.value.size, info.value.limit) == (len(payload), len(payload) - 1)


def test_event_of_exactly_max_bytes_is_decoded() -> None:
    payload = encode(v1_event())
    assert decode_event(payload, max_bytes=len(payload)).event_id == "evt-1"


def test_size_is_checked_before_parsing() -> None:
    with pytest.raises(EventTooLargeError):
        decode_event(b"not json at all", max_bytes=3)


@pytest.mark.parametrize(
    "error",
    [EventDecodeError, EventTooLargeError, EventValidationError],
)
def test_every_decoder_error_is_poison(error: type[Exception]) -> None:
    assert issubclass(error, PoisonEventError)


# --- the JSON Schema file ---------------------------------------------------------


def test_committed_schema_is_what_the_generator_writes() -> None:
    # Regenerate with: python -m worker.events.json_schema
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render()


def test_schema_carries_its_identity() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    identity = (
        schema["$schema"],
        schema["$id"],
        bool(schema["title"]),
        bool(schema["description"]),
    )
    assert identity == (
        "https://json-schema.org/draft/2020-12/schema",
        "urn:memscore:schema:conversation-closed:v1",
        True,
        True,
    )


def test_schema_requires_what_the_model_requires() -> None:
    assert conversation_closed_schema()["required"] == [
        "event_id",
        "conversation_id",
        "system_prompt",
        "entries",
    ]


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize(
    "sample",
    [v1_event(), minimal_event(), cloudevent(v1_event())["data"]],
    ids=["full", "minimal", "cloudevents-data"],
)
def test_sample_events_validate_against_the_schema(sample: dict[str, Any]) -> None:
    decode(sample)  # the decoder accepts it ...
    assert list(_validator().iter_errors(sample)) == []  # ... and so does the schema


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("entries.2.type", "note"),
        ("entries.0.key", ""),
        ("entries.1.role", "robot"),
        ("entries.0.key", "a\x00b"),
        ("event_id", "\x00"),
        ("conversation_id", "c\x00"),
        ("model", "\x00m"),
    ],
)
def test_schema_rejects_what_the_decoder_rejects(path: str, value: object) -> None:
    sample = replaced(v1_event(), path, value)
    with pytest.raises(EventValidationError):
        decode(sample)
    assert _validator().is_valid(sample) is False


def test_schema_rejects_an_event_without_entries() -> None:
    assert _validator().is_valid(removed(v1_event(), "entries")) is False
