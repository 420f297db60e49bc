"""Bytes off the wire → ConversationEvent, or a typed PoisonEventError.

Accepts the bare v1 object and a CloudEvents 1.0 structured-mode envelope around
it; the envelope's ``source`` becomes the event's. Error messages name fields, never
echo their values (users' personal data).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from worker.errors import EventDecodeError, EventTooLargeError, EventValidationError
from worker.events.schema import (
    LONE_SURROGATE_ERROR,
    LONE_SURROGATE_MESSAGE,
    NO_NUL_PATTERN,
    NUL_MESSAGE,
    ConversationEvent,
    holds_lone_surrogate,
)

_json = msgspec.json.Decoder()


# pydantic reports a missing or unknown entry type at the entry, and quotes an
# unknown tag in its message: name the field instead, never the value.
_TAG_ERRORS = {
    "union_tag_invalid": "Input should be 'memory' or 'message'",
    "union_tag_not_found": "Field required",
}


def _location(loc: tuple[int | str, ...]) -> str:
    # pydantic puts the discriminator's tag in the location ("entries.3.memory.key")
    parts = [str(p) for p in loc if p not in ("memory", "message")]
    return ".".join(parts) or "<root>"


def _field_and_message(error: ErrorDetails) -> tuple[str, str]:
    if error["type"] in _TAG_ERRORS:
        return f"{_location(error['loc'])}.type", _TAG_ERRORS[error["type"]]
    if error["type"] == LONE_SURROGATE_ERROR:
        return _location(error["loc"]), LONE_SURROGATE_MESSAGE
    if (
        error["type"] == "string_pattern_mismatch"
        and error.get("ctx", {}).get("pattern") == NO_NUL_PATTERN
    ):
        return _location(error["loc"]), NUL_MESSAGE
    return _location(error["loc"]), error["msg"]


def _v1_object(obj: dict[str, Any]) -> dict[str, Any]:
    """The v1 object of a record: the record itself, or a CloudEvents envelope's data."""
    if "specversion" not in obj:
        return _without_source(obj)
    data = obj.get("data")
    if isinstance(data, str | bytes):
        # Some producers put the JSON payload in data as a string.
        try:
            data = _json.decode(data)
        except (msgspec.DecodeError, RecursionError):
            raise EventValidationError(
                "CloudEvents data is a string that is not JSON", ("data",)
            ) from None
    if not isinstance(data, dict):
        raise EventValidationError("CloudEvents envelope without an object in data", ("data",))
    # The envelope's source, never one from inside data: the envelope is what the
    # producer vouches for. A non-string source is left for the schema to refuse; an
    # envelope without one (CloudEvents requires it) decodes as a bare object would.
    data = _without_source(data)
    if "source" in obj:
        data = {**data, "source": obj["source"]}
    if "event_id" not in data and isinstance(obj.get("id"), str):
        data = {**data, "event_id": obj["id"]}
    return data


def _without_source(obj: dict[str, Any]) -> dict[str, Any]:
    # A bare v1 object's "source" was always an ignored unknown field, and stays one.
    if "source" not in obj:
        return obj
    return {key: value for key, value in obj.items() if key != "source"}


def _strings(value: object) -> Iterator[str]:
    """Every string in a parsed JSON value, keys included, without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _parse_with_lone_surrogates(payload: bytes) -> dict[str, Any] | None:
    """The event msgspec refused, if a lone UTF-16 surrogate escape is why; else None.

    msgspec refuses ``"\\ud800"`` as malformed JSON (or "truncated"), which names no field.
    The standard library keeps the surrogate, so validation can name the field it is in.
    """
    if b"\\u" not in payload:
        return None
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError included
        return None
    if not isinstance(obj, dict):
        return None
    return obj if any(map(holds_lone_surrogate, _strings(obj))) else None


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _validate(obj: dict[str, Any]) -> ConversationEvent:
    try:
        return ConversationEvent.model_validate(_v1_object(obj))
    except ValidationError as exc:
        errors = [
            _field_and_message(e)
            for e in exc.errors(include_input=False, include_url=False, include_context=True)
        ]
        fields = tuple(field for field, _ in errors)
        shown = "; ".join(f"{field}: {message}" for field, message in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise EventValidationError(
            f"event does not match schema v1: {shown}{more}", fields
        ) from None


def decode_event(payload: bytes, *, max_bytes: int) -> ConversationEvent:
    """Decode one Kafka record value into an event."""
    if len(payload) > max_bytes:
        raise EventTooLargeError(len(payload), max_bytes)
    try:
        obj = _json.decode(payload)
    except msgspec.DecodeError as exc:
        lenient = _parse_with_lone_surrogates(payload)
        if lenient is not None:
            _validate(lenient)  # names the field that holds the surrogate, if it is one
            raise EventDecodeError(
                "event is not valid JSON: a string outside the schema's fields holds a "
                "lone UTF-16 surrogate escape"
            ) from None
        # msgspec's message names a byte position, not content.
        raise EventDecodeError(f"event is not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise EventDecodeError(f"event is not valid UTF-8 at byte {exc.start}") from None
    except RecursionError:
        raise EventDecodeError("event is not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise EventValidationError(
            f"event must be a JSON object, not {type(obj).__name__}", ("<root>",)
        )
    return _validate(obj)
