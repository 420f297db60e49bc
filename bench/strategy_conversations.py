"""Conversations for the strategies benchmark: short plain-English memories a small model reads.

Each conversation has four exchanges, each resting on known memories:

- a single-memory answer ("What is my sister called?" -> the memory naming her), with a
  distractor that shares the question's words but does not answer it ("The user's sister
  loves long walks.");
- a two-memory answer (who, then where: "Your cousin Rosa lives in Porto.");
- a redundant pair: two memories that say the same thing in other words, so leaving out
  either one alone changes little (what leave-one-out cannot see);
- an answer resting on a memory recalled mid-conversation (after the first exchange).

The other memories are filler facts of the same shape about other people and pets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

_RELATIONS = [
    "sister",
    "brother",
    "dog",
    "cat",
    "boss",
    "dentist",
    "neighbour",
    "son",
    "daughter",
    "landlord",
    "coach",
    "doctor",
    "partner",
    "cousin",
    "parrot",
    "uncle",
    "aunt",
    "teacher",
    "plumber",
    "tutor",
    "niece",
    "nephew",
    "grandmother",
    "grandfather",
    "hamster",
    "mentor",
    "barber",
    "lawyer",
    "accountant",
    "pilot",
    "chef",
    "gardener",
    "trainer",
    "colleague",
    "roommate",
    "godfather",
    "godmother",
    "stepson",
    "stepdaughter",
    "vet",
    "pharmacist",
    "tailor",
    "driver",
    "nanny",
    "agent",
    "therapist",
    "editor",
    "banker",
    "architect",
    "baker",
    "florist",
    "mechanic",
    "pianist",
    "jeweller",
    "captain",
    "surgeon",
    "goldfish",
    "pony",
    "tortoise",
    "rabbit",
    "lodger",
    "butler",
    "caretaker",
]
_NAMES = [
    "Ana",
    "Biscuit",
    "Tom",
    "Lena",
    "Marco",
    "Priya",
    "Otto",
    "Rosa",
    "Kenji",
    "Maya",
    "Felix",
    "Nora",
    "Ivan",
    "Clara",
    "Diego",
    "Hugo",
    "Zara",
    "Omar",
    "Elsa",
    "Bruno",
    "Ines",
    "Pablo",
    "Greta",
    "Luca",
    "Mina",
    "Sven",
    "Talia",
    "Rufus",
    "Olga",
    "Yusuf",
    "Ada",
    "Basil",
    "Cleo",
    "Dario",
    "Edith",
    "Fabio",
    "Gwen",
    "Hamid",
    "Iris",
    "Jonas",
    "Kira",
    "Leon",
    "Mila",
    "Nils",
    "Opal",
    "Pedro",
    "Quinn",
    "Rhea",
    "Silas",
    "Tara",
    "Umar",
    "Vera",
    "Wim",
    "Xena",
    "Yara",
    "Zeno",
    "Alba",
    "Boris",
    "Carla",
    "Dmitri",
    "Enzo",
    "Freya",
    "Gil",
    "Hana",
]
_CITIES = [
    "Porto",
    "Lisbon",
    "Madrid",
    "Berlin",
    "Oslo",
    "Vienna",
    "Prague",
    "Dublin",
    "Lyon",
    "Turin",
    "Krakow",
    "Ghent",
    "Bergen",
    "Seville",
    "Munich",
    "Zurich",
    "Riga",
    "Tallinn",
    "Malmo",
    "Bruges",
]
_DISTRACTIONS = (
    "loves long walks",
    "was born in the spring",
    "likes strong coffee",
    "is learning to paint",
    "has a very loud laugh",
    "never remembers birthdays",
)
SYSTEM_PROMPT = "You are a helpful personal assistant. Use the user's memories when they help."


@dataclass(frozen=True)
class BenchConversation:
    event: dict[str, Any]
    #: Memory keys of each redundant pair (the two say the same thing).
    redundant_pairs: tuple[tuple[str, str], ...]


def _memory(key: str, content: str) -> dict[str, Any]:
    return {"type": "memory", "key": key, "content": content}


def _turn(question: str, answer: str) -> list[dict[str, Any]]:
    return [
        {"type": "message", "role": "user", "content": question},
        {"type": "message", "role": "assistant", "content": answer},
    ]


def bench_conversation(seed: int, memories: int) -> BenchConversation:
    """A conversation with exactly ``memories`` memories (at least 8)."""
    if memories < 8:
        raise ValueError("a bench conversation needs at least 8 memories")
    rng = random.Random(seed)
    relations = rng.sample(_RELATIONS, len(_RELATIONS))
    names = rng.sample(_NAMES, len(_NAMES))
    single, pair_who, redundant, recalled, *others = relations
    who_name = names[1]
    city = rng.choice(_CITIES)
    used = {
        "single": _memory("single", f"The user's {single} is called {names[0]}."),
        "single.distractor": _memory(
            "single.distractor", f"The user's {single} {rng.choice(_DISTRACTIONS)}."
        ),
        "who": _memory("who", f"The user's {pair_who} is called {who_name}."),
        "where": _memory("where", f"{who_name} lives in {city}."),
        "same.a": _memory("same.a", f"The user's {redundant} is called {names[2]}."),
        "same.b": _memory("same.b", f"{names[2]} is the name of the user's {redundant}."),
    }
    recall = _memory("recalled", f"The user's {recalled} is called {names[3]}.")
    filler_count = memories - len(used) - 1
    fillers = [
        _memory(
            f"filler.{k}", f"The user's {others[k % len(others)]} is called {names[4 + k % 60]}."
        )
        for k in range(filler_count)
    ]
    opening = list(used.values()) + fillers
    rng.shuffle(opening)
    entries = opening + _turn(
        f"What is my {single} called?", f"Your {single} is called {names[0]}."
    )
    entries.append(recall)  # recalled mid-conversation, after the first exchange
    entries += _turn(
        f"Where does my {pair_who} live?", f"Your {pair_who} {who_name} lives in {city}."
    )
    entries += _turn(f"And my {redundant}?", f"Your {redundant} is called {names[2]}.")
    entries += _turn(f"What about my {recalled}?", f"Your {recalled} is called {names[3]}.")
    event = {
        "event_id": f"bench-strategies-{seed}-{memories}",
        "conversation_id": f"bench-strategies-{seed}-{memories}",
        "system_prompt": SYSTEM_PROMPT,
        "entries": entries,
    }
    return BenchConversation(event, (("same.a", "same.b"),))
