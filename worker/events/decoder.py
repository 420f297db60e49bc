"""Bytes off the wire → ConversationEvent, or a typed PoisonEventError.

Accepts the bare v1 object and a CloudEvents 1.0 structured-mode envelope around
it. Error messages name fields, never echo their values (users' personal data).
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import ValidationError

from worker.errors import EventDecodeError, EventTooLargeError, EventValidationError
from worker.events.schema import ConversationEvent

_json = msgspec.json.Decoder()


def _location(loc: tuple[int | str, ...]) -> str:
    # pydantic puts the discriminator's tag in the location ("entries.3.memory.key")
    parts = [str(p) for p in loc if p not in ("memory", "message")]
    return ".".join(parts) or "<root>"


def _unwrap_cloudevent(obj: dict[str, Any]) -> dict[str, Any]:
    if "specversion" not in obj:
        return obj
    data = obj.get("data")
    if isinstance(data, str | bytes):
        # Some producers put the JSON payload in data as a string.
        try:
            data = _json.decode(data)
        except msgspec.DecodeError:
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
        errors = exc.errors(include_input=False, include_url=False, include_context=False)
        fields = tuple(_location(e["loc"]) for e in errors)
        shown = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        raise EventValidationError(
            f"event does not match schema v1: {shown}{more}", fields
        ) from None
