"""`python -m devstack capture-vllm`: record real vLLM answers as fixtures for the fast suite.

Sends the requests memscore sends (and the ones it must survive) to a real vLLM server and
writes one JSON file per exchange: `{"vllm_version", "request": {"method", "path", "body"},
"status", "response"}`. Without `--url` it prepares and starts its own server. The fast
suite replays these bodies through the parser, the response locator and the client
(tests/unit/test_vllm_contract.py), so vLLM's real shapes stay under test without vLLM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.ports import free_port
from devstack.samples import DEMO_CONVERSATIONS
from devstack.vllm_cpu.errors import VLLMUnavailable
from devstack.vllm_cpu.prepare import VLLM_VERSION, prepare
from devstack.vllm_cpu.server import VLLMServer

DEFAULT_OUT = Path("tests/data/vllm/real-0.32")
MODEL = "smollm2"
_LONGEST_RECORDED = 500
# Split multi-byte characters (ë, Ł, ó, an emoji) decode to U+FFFD piece by piece.
NON_ASCII: dict[str, Any] = {
    "system_prompt": "You are a helpful assistant.",
    "entries": [
        {"type": "memory", "key": "cat", "content": "The user's cat is called Zoë, in Łódź 🐈."},
        {"type": "message", "role": "user", "content": "What is my cat called?"},
        {"type": "message", "role": "assistant", "content": "Your cat is called Zoë, in Łódź 🐈."},
    ],
}


# An answer that opens with a multi-byte character: its first piece decodes to "" alone.
LEADING_SPLIT: dict[str, Any] = {
    "system_prompt": "You are a helpful assistant.",
    "entries": [
        {"type": "memory", "key": "city", "content": "Zoë lives in Łódź with her cat."},
        {"type": "message", "role": "user", "content": "Where does Zoë live?"},
        {"type": "message", "role": "assistant", "content": "Łódź, with her cat 🐈."},
    ],
}


def chat_messages(event: dict[str, Any]) -> list[dict[str, str]]:
    """The messages memscore sends for an event's baseline: the system prompt, then every
    entry (memories as messages of their role, `user` by default) in order."""
    messages = [{"role": "system", "content": event["system_prompt"]}]
    for entry in event["entries"]:
        messages.append({"role": entry.get("role", "user"), "content": entry["content"]})
    return messages


def scoring_request(messages: list[dict[str, str]], **changes: Any) -> dict[str, Any]:
    """The body of memscore's scoring request (worker.inference.client), with changes."""
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": 1,
        "prompt_logprobs": 0,
        "stream": False,
        "return_token_ids": True,
    }
    body.update(changes)
    return {key: value for key, value in body.items() if value is not None}


@dataclass(frozen=True)
class Exchange:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    expect: set[int] = field(default_factory=lambda: {200})


def exchanges() -> list[Exchange]:
    dog = chat_messages(DEMO_CONVERSATIONS[0])
    travel = chat_messages(DEMO_CONVERSATIONS[2])
    cat = chat_messages(NON_ASCII)
    too_long = [*dog[:1], {"role": "user", "content": "Lisbon is lovely. " * 3000}, *dog[1:]]
    chat = "/v1/chat/completions"
    return [
        Exchange("chat-dog-k0-token-ids", "POST", chat, scoring_request(dog)),
        Exchange("chat-dog-k0", "POST", chat, scoring_request(dog, return_token_ids=None)),
        Exchange("chat-travel-k0-token-ids", "POST", chat, scoring_request(travel)),
        Exchange("chat-non-ascii-k0-token-ids", "POST", chat, scoring_request(cat)),
        Exchange(
            "chat-non-ascii-k2-token-ids", "POST", chat, scoring_request(cat, prompt_logprobs=2)
        ),
        Exchange(
            "chat-leading-split-k0-token-ids",
            "POST",
            chat,
            scoring_request(chat_messages(LEADING_SPLIT)),
        ),
        Exchange("tokenize-non-ascii", "POST", "/tokenize", {"model": MODEL, "messages": cat}),
        Exchange("error-context-length", "POST", chat, scoring_request(too_long), expect={400}),
        Exchange(
            "error-unknown-model",
            "POST",
            chat,
            scoring_request(dog, model="no-such-model"),
            expect={404},
        ),
        Exchange("models", "GET", "/v1/models"),
        Exchange("version", "GET", "/version"),
    ]


def _abridged(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """The request as recorded: a message too long to read is described, not repeated."""
    if body is None or "messages" not in body:
        return body
    messages = [
        {**m, "content": f"{m['content'][:40]}... ({len(m['content'])} characters)"}
        if len(m["content"]) > _LONGEST_RECORDED
        else m
        for m in body["messages"]
    ]
    return {**body, "messages": messages}


def capture(base_url: str, out: Path) -> list[Path]:
    """Send every exchange to `base_url` and write what came back under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with httpx.Client(base_url=base_url, timeout=120.0) as http:
        for exchange in exchanges():
            response = http.request(exchange.method, exchange.path, json=exchange.body)
            if response.status_code not in exchange.expect:
                raise RuntimeError(
                    f"{exchange.name}: vLLM answered {response.status_code}, expected "
                    f"{sorted(exchange.expect)}: {response.text[:300]}"
                )
            record = {
                "vllm_version": VLLM_VERSION,
                "request": {
                    "method": exchange.method,
                    "path": exchange.path,
                    "body": _abridged(exchange.body),
                },
                "status": response.status_code,
                "response": response.json(),
            }
            path = out / f"{exchange.name}.json"
            path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
            written.append(path)
    return written


@contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url.rstrip("/")
        return
    with VLLMServer(prepare(), free_port()) as server:
        yield server.base_url


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack capture-vllm", description=__doc__)
    parser.add_argument("--url", help="a running vLLM serving `smollm2` (default: start one)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        with _server(args.url) as base_url:
            written = capture(base_url, args.out)
    except (VLLMUnavailable, RuntimeError, httpx.HTTPError) as exc:
        print(f"capture-vllm: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
