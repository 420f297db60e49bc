"""The synthetic backend's tokenizer: deterministic, lossless, and shaped like a real BPE one.

ASCII text splits into words with their leading space (`" world"`), numbers of up to three
digits, single punctuation marks and single whitespace characters; anything else falls back to
one token per UTF-8 byte, so a non-ASCII character decoded on its own comes out as U+FFFD, as it
does for byte-level BPE vocabularies served by vLLM. Ids come from a hash of the piece, so they
are the same in every server process; ChatML's special tokens are 1 and 2, as in SmolLM2.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence

END_OF_TEXT, IM_START, IM_END = 0, 1, 2
SPECIAL_TOKENS = {"<|endoftext|>": END_OF_TEXT, "<|im_start|>": IM_START, "<|im_end|>": IM_END}
BYTE_BASE = 3  # ids 3..258 are the bytes 0..255
FIRST_PIECE_ID = 1024
_PIECE_ID_SPACE = 2**31 - FIRST_PIECE_ID

_SPECIAL_RE = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
# Order matters: the last alternative catches what the others leave (non-ASCII, controls).
_PIECE_RE = re.compile(
    r" ?[A-Za-z]+| ?[0-9]{1,3}| ?[!-/:-@\[-`{-~]|[ \t\n\r]|[^\x00-\x7f]+|.",
    re.DOTALL,
)
_WORD_RE = re.compile(r" ?[A-Za-z0-9]+")


def byte_token(value: int) -> int:
    return BYTE_BASE + value


def is_continuation_byte(token_id: int) -> bool:
    return BYTE_BASE + 0x80 <= token_id < BYTE_BASE + 0xC0


class SyntheticTokenizer:
    """Text ⇄ token ids. Also knows, per token, the word it spells (for the logprob model)."""

    def __init__(self, cache_size: int = 16384) -> None:
        self._pieces: dict[int, str] = {v: k for k, v in SPECIAL_TOKENS.items()}
        self._piece_ids: dict[str, int] = {}
        self._word_keys: dict[int, int] = {}
        # Ablation requests repeat the same messages N+1 times; encode each text once.
        self._encode_cached = functools.lru_cache(maxsize=cache_size)(self._encode_plain)

    def piece_id(self, piece: str) -> int:
        """The id of a vocabulary piece (a word, number, mark or ASCII whitespace)."""
        token_id = self._piece_ids.get(piece)
        if token_id is None:
            digest = hashlib.blake2b(piece.encode(), digest_size=8).digest()
            token_id = FIRST_PIECE_ID + int.from_bytes(digest, "little") % _PIECE_ID_SPACE
            self._piece_ids[piece] = token_id
            self._pieces[token_id] = piece
            if _WORD_RE.fullmatch(piece):
                # " Biscuit", "Biscuit" and "biscuit" are one word for the logprob model.
                word = piece.strip().lower().encode()
                key = hashlib.blake2b(word, digest_size=8).digest()
                self._word_keys[token_id] = int.from_bytes(key, "little") >> 1
        return token_id

    def word_key(self, token_id: int) -> int:
        """A key shared by the spellings of one word, or 0 for tokens that are not words."""
        return self._word_keys.get(token_id, 0)

    def encode(self, text: str) -> list[int]:
        """Text with ChatML special tokens recognised."""
        ids: list[int] = []
        position = 0
        for match in _SPECIAL_RE.finditer(text):
            ids.extend(self._encode_cached(text[position : match.start()]))
            ids.append(SPECIAL_TOKENS[match.group()])
            position = match.end()
        ids.extend(self._encode_cached(text[position:]))
        return ids

    def _encode_plain(self, text: str) -> tuple[int, ...]:
        ids: list[int] = []
        for piece in _PIECE_RE.findall(text):
            if piece.isascii() and (piece.isprintable() or piece in " \t\n\r"):
                ids.append(self.piece_id(piece))
            else:
                ids.extend(byte_token(value) for value in piece.encode())
        return tuple(ids)

    def decode_token(self, token_id: int) -> str:
        return self.decode([token_id])

    def decode(self, token_ids: Sequence[int]) -> str:
        data = bytearray()
        for token_id in token_ids:
            if BYTE_BASE <= token_id < BYTE_BASE + 256:
                data.append(token_id - BYTE_BASE)
            else:
                data.extend(self._pieces.get(token_id, "").encode())
        return data.decode("utf-8", errors="replace")
