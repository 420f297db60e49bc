"""The conversation-closed event (schema v1) and its decoder. Pure: no I/O."""

from worker.events.decoder import decode_event
from worker.events.schema import ConversationEvent, MemoryEntry, MessageEntry, Role

__all__ = ["ConversationEvent", "MemoryEntry", "MessageEntry", "Role", "decode_event"]
