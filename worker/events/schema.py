"""Schema v1 of the conversation-closed event.

``entries`` interleaves the memories the agent put into the context with the
conversation's messages, in the order they were sent to the model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["user", "assistant", "system", "tool"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class MemoryEntry(_Frozen):
    type: Literal["memory"]
    key: Annotated[str, Field(min_length=1, max_length=512)]
    role: Role = "user"
    content: str


class MessageEntry(_Frozen):
    type: Literal["message"]
    role: Role
    content: str


Entry = Annotated[MemoryEntry | MessageEntry, Field(discriminator="type")]


class ConversationEvent(_Frozen):
    event_id: Annotated[str, Field(min_length=1, max_length=512)]
    conversation_id: Annotated[str, Field(min_length=1, max_length=512)]
    # strict mode would refuse an RFC 3339 string; timestamps are the one lax field.
    closed_at: Annotated[datetime | None, Field(strict=False)] = None
    model: Annotated[str, Field(min_length=1)] | None = None
    system_prompt: str
    context_message: str | None = None
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
