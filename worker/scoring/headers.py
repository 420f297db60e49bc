"""Where a prompt's chat-template markup is, so that no message is located inside it.

A short text ("a", "is", "user") occurs inside the markup around every turn: in
``<|im_start|>``, in ``<|start_header_id|>``, in the role name ``assistant``. Two kinds of
markup are told apart:

* special tokens (``<|im_start|>``, ``<|eot_id|>``, Phi-3's ``<|assistant|>``, DeepSeek's
  between full-width bars (U+FF5C), Gemma's ``<start_of_turn>``) are atoms: a message's
  text may hold a whole one (vLLM renders a literal one in content as the token) but never
  part of one;
* the role name that follows a turn's opening token (ChatML's and Qwen3's ``<|im_start|>user``,
  SmolLM2's ``ass`` + ``istant`` alike once joined, Llama-3's ``<|start_header_id|>assistant``,
  Gemma's ``<start_of_turn>model``) is never a message's text. vLLM sends no text for a
  prompt's first token, so a role name at the very start of the text is one too.

A template whose turns have no role names (Mistral's ``[INST]``) has no role spans: only its
special tokens of the shapes above are known.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

# A special token, starting with its literal "<" so that re skips to each "<" quickly.
_SPECIAL = re.compile(
    r"<(?:\|[^|\s<>]{1,64}\||\uff5c[^\uff5c\s<>]{1,64}\uff5c|(?:start|end)_of_turn)>"
)
# The special tokens that open a turn and are followed by its role name.
_OPENERS = frozenset({"<|im_start|>", "<|start_header_id|>", "<start_of_turn>"})
_ROLE = re.compile(r"(?:system|user|assistant|tool|ipython|model|developer)(?=\s|<|\Z)")
# Role names that open an answer's turn (Gemma calls the assistant "model").
_ANSWER_ROLES = frozenset({"assistant", "model"})


@dataclass(frozen=True, eq=False)
class Markup:
    """The markup of one prompt's joined token texts: character ranges, in order."""

    atom_starts: list[int]
    atom_ends: list[int]
    role_starts: list[int]
    role_ends: list[int]
    #: Where each header that opens an answer's turn ends, in order.
    answer_header_ends: list[int]

    @classmethod
    def of(cls, text: str) -> Markup:
        atom_starts: list[int] = []
        atom_ends: list[int] = []
        # vLLM sends no text for the first token, which opens the first turn.
        role_at = [0]
        for match in _SPECIAL.finditer(text):
            start, end = match.span()
            atom_starts.append(start)
            atom_ends.append(end)
            if match.group() in _OPENERS:
                role_at.append(end)
        role_starts: list[int] = []
        role_ends: list[int] = []
        answers: list[int] = []
        for at in role_at:
            role = _ROLE.match(text, at)
            if role is not None:
                role_starts.append(at)
                role_ends.append(role.end())
                if role.group() in _ANSWER_ROLES:
                    answers.append(role.end())
        # Phi-3's <|assistant|>, DeepSeek's (full-width bars): the token is the whole header.
        answers.extend(
            end
            for start, end in zip(atom_starts, atom_ends, strict=True)
            if "assistant" in text[start:end].lower()
        )
        answers.sort()
        return cls(atom_starts, atom_ends, role_starts, role_ends, answers)

    def allows(self, start: int, end: int) -> bool:
        """Whether characters [start, end) may be a message's text.

        They may not overlap a role name, nor begin or end inside a special token.
        """
        role = bisect_left(self.role_starts, end) - 1  # the last role name starting before end
        if role >= 0 and self.role_ends[role] > start:
            return False
        first = bisect_right(self.atom_starts, start) - 1
        if first >= 0 and self.atom_starts[first] < start < self.atom_ends[first]:
            return False
        last = bisect_left(self.atom_starts, end) - 1
        return not (last >= 0 and end < self.atom_ends[last])

    def after_answer_header(self, pos: int) -> int:
        """Where the first answer header at or after ``pos`` ends; ``pos`` if there is none.

        A response's text comes after its own header, so nothing before that header (an
        earlier message whose anchor was not found, the header itself) can be taken for it.
        """
        at = bisect_left(self.answer_header_ends, pos)
        return self.answer_header_ends[at] if at < len(self.answer_header_ends) else pos
