"""The scoring math: locate responses, compare logprobs, build the MemoryScore. Pure numpy."""

from worker.scoring.divergence import (
    ResponseTokens,
    build_memory_score,
    divergence_row,
    response_divergence,
)
from worker.scoring.memory_score import (
    IMPORTANCE_THRESHOLD,
    ConversationScore,
    MemoryScore,
    Metric,
)
from worker.scoring.spans import MessagePattern, locate_responses, response_segments
from worker.scoring.tokens import TokenStream, normalize_token_texts

__all__ = [
    "IMPORTANCE_THRESHOLD",
    "ConversationScore",
    "MemoryScore",
    "MessagePattern",
    "Metric",
    "ResponseTokens",
    "TokenStream",
    "build_memory_score",
    "divergence_row",
    "locate_responses",
    "normalize_token_texts",
    "response_divergence",
    "response_segments",
]
