"""Build response bodies in vLLM's prompt_logprobs shape from rendered prompt text.

Tokens are cut the way BPE tokenizers tend to (special tokens whole, a leading
space glued to the word, punctuation alone) and non-ASCII characters are split
into byte tokens that decode to U+FFFD on their own, as vLLM's per-token
decoding does. Test data, not a tokenizer.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable, Sequence

SPECIAL = re.compile(r"<\|[a-z_]+\|>")
PIECE = re.compile(r" ?[A-Za-z0-9']+|\s|[^\sA-Za-z0-9']")


def tokenize(rendered: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    for special in [*SPECIAL.finditer(rendered), None]:
        end = special.start() if special else len(rendered)
        for piece in PIECE.findall(rendered[pos:end]):
            if piece.isascii():
                tokens.append(piece)
            else:  # one token per UTF-8 byte: each decodes to U+FFFD alone
                tokens.extend("\ufffd" for _ in piece.encode())
        if special:
            tokens.append(special.group())
            pos = special.end()
    return tokens


def token_id(text: str) -> int:
    return zlib.crc32(text.encode()) % 50_000


def body(
    texts: Sequence[str],
    logprob: Callable[[int, str], float] = lambda i, t: -1.0,
    *,
    top_k: int = 0,
    with_ids: bool = False,
    ids: Sequence[int] | None = None,
) -> bytes:
    """A chat-completions response body whose prompt_logprobs cover ``texts``."""
    ids = list(ids) if ids is not None else [token_id(t) + i * 50_000 for i, t in enumerate(texts)]
    entries: list[object] = [None]
    for i in range(1, len(texts)):
        entry = {
            str(ids[i]): {"logprob": logprob(i, texts[i]), "rank": 3, "decoded_token": texts[i]}
        }
        for k in range(top_k):
            entry[str(10_000_000 + k)] = {
                "logprob": -0.1 * (k + 1),
                "rank": k + 1,
                "decoded_token": "x",
            }
        entries.append(entry)
    response: dict[str, object] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}],
        "usage": {
            "prompt_tokens": len(texts),
            "completion_tokens": 1,
            "total_tokens": len(texts) + 1,
        },
        "prompt_logprobs": entries,
    }
    if with_ids:
        response["prompt_token_ids"] = ids
    return json.dumps(response).encode()


def chatml(messages: Sequence[tuple[str, str]]) -> str:
    out = "".join(
        f"<|im_start|>{role}\n{content.strip()}<|im_end|>\n" for role, content in messages
    )
    return out + "<|im_start|>assistant\n"


def llama3(messages: Sequence[tuple[str, str]]) -> str:
    out = "<|begin_of_text|>"
    for role, content in messages:
        out += f"<|start_header_id|>{role}<|end_header_id|>\n\n{content.strip()}<|eot_id|>"
    return out + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def qwen3(messages: Sequence[tuple[str, str]]) -> str:
    """Qwen3 drops the reasoning of assistant turns before the last user message."""
    last_user = max(i for i, (role, _) in enumerate(messages) if role == "user")
    out = ""
    for i, (role, content) in enumerate(messages):
        if role == "assistant":
            match = re.match(r"\s*<think>(.*?)</think>(.*)", content, re.DOTALL)
            if match:
                reasoning, answer = match.group(1).strip(), match.group(2).strip()
                content = f"<think>\n{reasoning}\n</think>\n\n{answer}" if i > last_user else answer
        out += f"<|im_start|>{role}\n{content.strip()}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"
