"""Patterns for (role, content) test conversations, built as the scorer builds them.

In these conversations every assistant message is a response; memories of any role are
the scorer's business (tests/unit/test_scorer.py).
"""

from __future__ import annotations

from worker.scoring.spans import MessagePattern


def as_sent(role: str, content: str) -> MessagePattern:
    """The pattern of a message entry: an assistant message is a response, any other not."""
    return MessagePattern.for_message(role, content, is_response=role == "assistant")
