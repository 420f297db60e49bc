"""The JSON Schema of the conversation-closed event, generated from ConversationEvent.

``python -m worker.events.json_schema`` rewrites ``worker/schemas/conversation-closed.v1.json``;
a unit test fails when the committed file and the model disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from worker.events.schema import ConversationEvent

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "conversation-closed.v1.json"

_HEADER: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:memscore:schema:conversation-closed:v1",
    "title": "memscore conversation-closed event, schema v1",
    "description": (
        "One finished conversation of an AI agent: the memories it put into the model's "
        "context and the messages, in the order they were sent (entries). Kafka key: "
        "conversation_id. The same object may come as the data of a CloudEvents 1.0 "
        "structured-mode envelope, whose id stands in for a missing event_id and whose "
        "source is kept with the event: an id is unique only within its source. Unknown "
        "fields are ignored, a source field of the object itself included. Stored strings "
        "(ids, keys, model) must not hold U+0000. Not expressible here: memory keys are "
        "unique within an event; no string may hold a lone UTF-16 surrogate (\\ud800)."
    ),
}


def conversation_closed_schema() -> dict[str, Any]:
    generated = ConversationEvent.model_json_schema()
    generated.pop("title", None)  # the class name; the header says what it is
    return {**_HEADER, **generated}


def render() -> str:
    """The file's exact text: stable key order, two-space indent, final newline."""
    return json.dumps(conversation_closed_schema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else SCHEMA_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
