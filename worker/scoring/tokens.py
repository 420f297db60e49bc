"""TokenStream: one prompt's tokens as the server scored them, and text recovery.

vLLM sends each token's text decoded on its own. Current releases give plain
text (`` world``, U+FFFD for a piece of a split character); older ones gave the
raw vocabulary piece (byte-level BPE ``Ġworld``/``Ċ``, SentencePiece ``▁world``
and ``<0x0A>``). ``normalize_token_texts`` turns either into plain text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np
import numpy.typing as npt

REPLACEMENT = "\ufffd"


@dataclass(frozen=True, eq=False)
class TokenStream:
    """Position p holds the prompt's p-th token: its id, its logprob and its text.

    Position 0 has no logprob (vLLM sends null there); its logprob is NaN and its
    text is empty unless the server told us the token.
    """

    token_ids: npt.NDArray[np.int64]
    logprobs: npt.NDArray[np.float64]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.texts)


@cache
def _byte_level_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode table, inverted: printable stand-in char -> byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


_SP_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _decode_byte_level(piece: str) -> str:
    table = _byte_level_decoder()
    data = bytes(table.get(ch, 0x3F) for ch in piece)
    return data.decode("utf-8", errors="replace")


def _decode_sentencepiece(piece: str) -> str:
    match = _SP_BYTE.fullmatch(piece)
    if match:
        byte = int(match.group(1), 16)
        return chr(byte) if byte < 0x80 else REPLACEMENT
    return piece.replace("▁", " ")


def normalize_token_texts(texts: list[str]) -> list[str]:
    """Plain text for each token, whichever convention the server used."""
    if any((" " in t or "\n" in t) for t in texts):
        return texts  # already decoded text (current vLLM)
    if any(t.startswith(("Ġ", "Ċ")) or "Ġ" in t for t in texts):
        return [_decode_byte_level(t) for t in texts]
    if any("▁" in t or _SP_BYTE.fullmatch(t) for t in texts):
        return [_decode_sentencepiece(t) for t in texts]
    return texts
