"""Bytes off the wire → ConversationEvent, or a typed PoisonEventError.

Accepts the bare v1 object and a CloudEvents 1.0 structured-mode envelope around
it. Error messages name fields, never echo their values (users' personal data).
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from worker.errors import EventDecodeError, EventTooLargeError, EventValidationError
from worker.events.schema import ConversationEvent

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
    return _location(error["loc"]), error["msg"]


def _unwrap_cloudevent(obj: dict[str, Any]) -> dict[str, Any]:
    if "specversion" not in obj:
        return obj
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
    if "event_id" not in data and isinstance(obj.get("id"), str):
        data = {**data, "event_id": obj["id"]}
    return data


def decode_event(payload: bytes, *, max_bytes: int) -> ConversationEvent:
    """Decode one Kafka record value into an event."""
    if len(payload) > max_bytes:
        raise EventTooLargeError(len(payload), max_bytes)
    try:
        obj = _json.decode(payload)
    except msgspec.DecodeError as exc:
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
    obj = _unwrap_cloudevent(obj)
    try:
        return ConversationEvent.model_validate(obj)
    except ValidationError as exc:
        errors = [
            _field_and_message(e)
            for e in exc.errors(include_input=False, include_url=False, include_context=False)
        ]
        fields = tuple(field for field, _ in errors)
        shown = "; ".join(f"{field}: {message}" for field, message in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise EventValidationError(
            f"event does not match schema v1: {shown}{more}", fields
        ) from None
