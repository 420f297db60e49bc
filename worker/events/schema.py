"""Schema v1 of the conversation-closed event.

``entries`` interleaves the memories the agent put into the context with the
conversation's messages, in the order they were sent to the model.

Every string must be whole Unicode characters: a lone UTF-16 surrogate (JSON's
``"\\ud800"``) can be neither stored nor sent to the model in a UTF-8 body. The
strings that are stored (ids, memory keys, the model's name, the source) must also not
hold U+0000, which PostgreSQL's text cannot store. Both are refused here, before any
model request, rather than failing later as an internal error.

``source`` is the CloudEvents envelope's ``source`` attribute, set by the decoder: a
CloudEvents ``id`` is unique only within its source, so (source, event_id) identifies an
event. A bare v1 object has no source (None); a ``source`` field inside it is ignored
like any other unknown field, as it always was.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

Role = Literal["user", "assistant", "system", "tool"]

#: What the stored strings must match: no U+0000 (in pydantic's and JSON Schema's regex).
NO_NUL_PATTERN = r"^[^\x00]*$"
#: pydantic's error type for a string that is not whole Unicode characters.
LONE_SURROGATE_ERROR = "string_unicode"
LONE_SURROGATE_MESSAGE = "must not hold a lone UTF-16 surrogate (U+D800 to U+DFFF)"
NUL_MESSAGE = "must not hold U+0000 (NUL), which the database cannot store"
_SURROGATE = re.compile("[\ud800-\udfff]")


def holds_lone_surrogate(text: str) -> bool:
    return not text.isascii() and _SURROGATE.search(text) is not None


def _whole_characters(text: str) -> str:
    # A constrained str gets this check from pydantic-core (string_unicode); free text
    # has no constraint to trigger it.
    if holds_lone_surrogate(text):
        raise PydanticCustomError(LONE_SURROGATE_ERROR, LONE_SURROGATE_MESSAGE)
    return text


#: Free text: sent to the model, never stored.
Text = Annotated[str, AfterValidator(_whole_characters)]
#: An identifier that is stored: 1 to 512 characters, no NUL.
Identifier = Annotated[str, Field(min_length=1, max_length=512, pattern=NO_NUL_PATTERN)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class MemoryEntry(_Frozen):
    type: Literal["memory"]
    key: Identifier
    role: Role = "user"
    content: Text


class MessageEntry(_Frozen):
    type: Literal["message"]
    role: Role
    content: Text


Entry = Annotated[MemoryEntry | MessageEntry, Field(discriminator="type")]


class ConversationEvent(_Frozen):
    event_id: Identifier
    # Not in the JSON Schema of the v1 object: the decoder takes it from the envelope.
    source: SkipJsonSchema[Identifier | None] = None
    conversation_id: Identifier
    # strict mode would refuse an RFC 3339 string; timestamps are the one lax field.
    closed_at: Annotated[datetime | None, Field(strict=False)] = None
    model: Annotated[str, Field(min_length=1, pattern=NO_NUL_PATTERN)] | None = None
    system_prompt: Text
    context_message: Text | None = None
    entries: list[Entry]

    @model_validator(mode="after")
    def _memory_keys_are_unique(self) -> ConversationEvent:
        seen: dict[str, int] = {}
        for index, entry in enumerate(self.entries):
            if isinstance(entry, MemoryEntry):
                if entry.key in seen:
                    raise ValueError(
                        f"entries.{index}.key repeats the key of entries.{seen[entry.key]}"
                    )
                seen[entry.key] = index
        return self

    @property
    def memory_indices(self) -> list[int]:
        """Entry indices of the memories, in conversation order."""
        return [i for i, e in enumerate(self.entries) if isinstance(e, MemoryEntry)]

    @property
    def response_indices(self) -> list[int]:
        """Entry indices of the assistant messages (the responses that get scored)."""
        return [
            i
            for i, e in enumerate(self.entries)
            if isinstance(e, MessageEntry) and e.role == "assistant"
        ]
