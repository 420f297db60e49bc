"""Divergence of ablated responses from the baseline, and the MemoryScore it builds.

For memory i and response j: the sum over the response's tokens of
max(0, baseline_logprob - ablated_logprob) (metric "drop"), or the signed sum
(metric "net"). Per-token changes within the noise floor count 0. A response that
comes before memory i in the conversation cannot depend on it: its entry is
exactly 0 and its tokens are not compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from worker.errors import InferenceResponseError, ResponseLocateError
from worker.scoring.memory_score import MemoryScore, Metric


@dataclass(frozen=True, eq=False)
class ResponseTokens:
    """One request's view of the responses: per response, its token ids and logprobs."""

    token_ids: list[npt.NDArray[np.int64]]
    logprobs: list[npt.NDArray[np.float64]]

    @property
    def token_counts(self) -> tuple[int, ...]:
        return tuple(len(ids) for ids in self.token_ids)


def response_divergence(
    baseline: npt.NDArray[np.float64],
    ablated: npt.NDArray[np.float64],
    *,
    metric: Metric,
    noise_floor: float,
) -> float:
    """Divergence of one response under one ablation (equal-length logprob arrays)."""
    delta = baseline - ablated
    if metric == "drop":
        return float(np.where(delta > noise_floor, delta, 0.0).sum())
    return float(np.where(np.abs(delta) > noise_floor, delta, 0.0).sum())


def divergence_row(
    baseline: ResponseTokens,
    ablated: ResponseTokens,
    *,
    memory_entry_index: int,
    response_entry_indices: Sequence[int],
    memory_number: int,
    metric: Metric,
    noise_floor: float,
) -> npt.NDArray[np.float64]:
    """One matrix row: what leaving out one memory did to every response."""
    row = np.zeros(len(response_entry_indices), dtype=np.float64)
    for j, entry_index in enumerate(response_entry_indices):
        if entry_index < memory_entry_index:
            continue  # causal zero: the response was written before the memory appeared
        base_ids, abl_ids = baseline.token_ids[j], ablated.token_ids[j]
        if len(base_ids) != len(abl_ids) or not np.array_equal(base_ids, abl_ids):
            raise ResponseLocateError(
                f"response {j} has {len(base_ids)} tokens in the baseline but "
                f"{len(abl_ids)} different or differently split ones without memory "
                f"{memory_number}",
                response_index=j,
            )
        row[j] = response_divergence(
            baseline.logprobs[j], ablated.logprobs[j], metric=metric, noise_floor=noise_floor
        )
    if not np.all(np.isfinite(row)):
        raise InferenceResponseError(f"non-finite divergence without memory {memory_number}")
    return row


def build_memory_score(
    *,
    memory_keys: Sequence[str],
    memory_entry_indices: Sequence[int],
    response_entry_indices: Sequence[int],
    baseline: ResponseTokens,
    ablations: Sequence[ResponseTokens],
    metric: Metric = "drop",
    noise_floor: float = 0.0,
) -> MemoryScore:
    """The full matrix from one baseline and one ablation per memory (same order)."""
    if len(ablations) != len(memory_keys):
        raise ValueError(f"{len(ablations)} ablations for {len(memory_keys)} memories")
    rows = [
        divergence_row(
            baseline,
            ablated,
            memory_entry_index=memory_entry_indices[i],
            response_entry_indices=response_entry_indices,
            memory_number=i,
            metric=metric,
            noise_floor=noise_floor,
        )
        for i, ablated in enumerate(ablations)
    ]
    matrix = (
        np.vstack(rows) if rows else np.zeros((0, len(response_entry_indices)), dtype=np.float64)
    )
    return MemoryScore(
        memory_keys=tuple(memory_keys),
        memory_entry_indices=tuple(memory_entry_indices),
        response_entry_indices=tuple(response_entry_indices),
        response_token_counts=baseline.token_counts,
        matrix=matrix,
        metric=metric,
        noise_floor=noise_floor,
    )
