"""Sample conversation-closed events: hand-written ones for the demo, generated ones for tests.

Generated events are deterministic for a seed. In each, the answers reuse the words
of one or two "used" memories, so with the synthetic model backend those memories
are the ones that matter, and the other memories are distractors.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

_WORDS = (  # noqa: SIM905 - a word list reads better as prose
    "apple river garden piano tennis violet harbor maple lantern quartz falcon meadow "
    "copper saffron glacier orchard velvet compass thistle ember cobalt willow summit "
    "pepper marble canyon juniper lagoon prairie basalt cedar nectar plume raven"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def generated_event(
    seed: int,
    *,
    memories: int = 4,
    words_per_memory: int = 12,
    turns: int = 2,
    words_per_answer: int = 10,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One event with ``memories`` memories and ``turns`` user/assistant exchanges."""
    rng = random.Random(seed)
    entries: list[dict[str, Any]] = []
    memory_texts = []
    for m in range(memories):
        text = f"Fact {m}: " + _sentence(rng, words_per_memory)
        memory_texts.append(text)
        entries.append({"type": "memory", "key": f"mem-{seed}-{m}", "content": text})
    for _ in range(turns):
        used = rng.choice(memory_texts).rstrip(".").split()[2:]
        entries.append({"type": "message", "role": "user", "content": _sentence(rng, 6)})
        answer = " ".join(rng.choice(used) for _ in range(words_per_answer)).capitalize() + "."
        entries.append({"type": "message", "role": "assistant", "content": answer})
    return {
        "event_id": event_id or str(uuid.UUID(int=rng.getrandbits(128))),
        "conversation_id": f"conv-{seed}",
        "closed_at": "2026-11-24T09:00:00Z",
        "system_prompt": "You are a helpful assistant with long-term memory.",
        "entries": entries,
    }


def _memory(key: str, content: str) -> dict[str, Any]:
    return {"type": "memory", "key": key, "content": content}


def _user(content: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": content}


def _assistant(content: str) -> dict[str, Any]:
    return {"type": "message", "role": "assistant", "content": content}


SYSTEM = "You are a helpful personal assistant. Use the user's memories when they help."

DEMO_CONVERSATIONS: list[dict[str, Any]] = [
    {
        "event_id": "demo-0001",
        "conversation_id": "demo-dog",
        "system_prompt": SYSTEM,
        "entries": [
            _memory("pet.dog", "The user's dog is named Biscuit."),
            _memory("home.city", "The user lives in Lisbon."),
            _memory("diet", "The user is vegetarian."),
            _memory("work", "The user works as a nurse on night shifts."),
            _user("What is my dog called?"),
            _assistant("Your dog is called Biscuit."),
        ],
    },
    {
        "event_id": "demo-0002",
        "conversation_id": "demo-dinner",
        "system_prompt": SYSTEM,
        "entries": [
            _memory("diet", "The user is vegetarian."),
            _memory("allergy", "The user is allergic to peanuts."),
            _memory("pet.dog", "The user's dog is named Biscuit."),
            _memory("music", "The user plays the cello."),
            _user("Suggest a dinner for tonight."),
            _assistant("How about a vegetarian mushroom risotto, with no peanuts anywhere?"),
        ],
    },
    {
        "event_id": "demo-0003",
        "conversation_id": "demo-travel",
        "system_prompt": SYSTEM,
        "entries": [
            _memory("home.city", "The user lives in Lisbon."),
            _memory("partner", "The user's partner is called Ana."),
            _memory("fear", "The user is afraid of flying."),
            _memory("pet.dog", "The user's dog is named Biscuit."),
            _user("How should I get to Madrid next week?"),
            _assistant("Since you are afraid of flying, take the train from Lisbon to Madrid."),
            _user("Who should I bring?"),
            _assistant("You could bring Ana, and leave Biscuit with a friend."),
        ],
    },
    {
        "event_id": "demo-0004",
        "conversation_id": "demo-birthday",
        "system_prompt": SYSTEM,
        "entries": [
            _memory("partner", "The user's partner is called Ana."),
            _memory("partner.birthday", "Ana's birthday is on the 3rd of March."),
            _memory("partner.likes", "Ana loves orchids and jazz."),
            _memory("work", "The user works as a nurse on night shifts."),
            _memory("music", "The user plays the cello."),
            _user("When is Ana's birthday and what should I get her?"),
            _assistant("Ana's birthday is on the 3rd of March. She would love orchids."),
        ],
    },
]
