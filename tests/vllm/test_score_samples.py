"""`memscore score` on the bundled sample conversations: real vLLM agrees with the stand-in.

Both serve SmolLM2-135M-Instruct in float32 from the same GGUF weights: the stand-in through
transformers (eager attention), vLLM through its own CPU kernels. The matrices must agree
within TOLERANCE, and each answer's gold memory (the one it quotes) must rank first on vLLM.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from devstack.samples import DEMO_CONVERSATIONS
from devstack.vllm_cpu import VLLMServer
from tests.vllm.scoring import scored_matrix

pytestmark = pytest.mark.vllm

# nats, per matrix entry. Entries are sums of per-token drops over a response (up to ~23
# nats here); the two engines' float32 arithmetic differs in the last bits of each logprob,
# and the entries measured differ by at most 0.001: a 10x margin, far below any ranking.
ABSOLUTE_TOLERANCE = 0.01
# conversation -> response entry -> the memories that answer quotes (any may rank first).
GOLD: dict[str, dict[int, set[str]]] = {
    "demo-dog": {5: {"pet.dog"}},
    "demo-dinner": {5: {"diet", "allergy"}},
    "demo-travel": {5: {"fear", "home.city"}, 7: {"partner", "pet.dog"}},
    "demo-birthday": {6: {"partner.birthday", "partner.likes"}},
}
IDS = [event["conversation_id"] for event in DEMO_CONVERSATIONS]

Scores = dict[str, tuple[dict[str, Any], npt.NDArray[np.float64]]]


@pytest.fixture(scope="module")
def vllm_scores(vllm_server: VLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Scores:
    tmp = tmp_path_factory.mktemp("vllm-scores")
    return {
        e["conversation_id"]: scored_matrix(tmp, e, vllm_server.base_url)
        for e in DEMO_CONVERSATIONS
    }


@pytest.fixture(scope="module")
def stand_in_scores(smollm2_model_url: str, tmp_path_factory: pytest.TempPathFactory) -> Scores:
    tmp = tmp_path_factory.mktemp("stand-in-scores")
    return {
        e["conversation_id"]: scored_matrix(tmp, e, smollm2_model_url) for e in DEMO_CONVERSATIONS
    }


@pytest.mark.parametrize("conversation", IDS)
def test_matrix_equals_the_stand_ins_within_tolerance(
    conversation: str, vllm_scores: Scores, stand_in_scores: Scores
) -> None:
    np.testing.assert_allclose(
        vllm_scores[conversation][1],
        stand_in_scores[conversation][1],
        atol=ABSOLUTE_TOLERANCE,
        rtol=0,
    )


@pytest.mark.parametrize("conversation", IDS)
def test_the_gold_memory_ranks_first(conversation: str, vllm_scores: Scores) -> None:
    body, matrix = vllm_scores[conversation]
    top = {
        entry: body["memory_keys"][int(np.argmax(matrix[:, column]))]
        for column, entry in enumerate(body["response_entry_indices"])
    }
    misranked = {e: top[e] for e, gold in GOLD[conversation].items() if top[e] not in gold}
    assert misranked == {}


@pytest.mark.parametrize("conversation", IDS)
def test_the_same_tokens_are_scored(
    conversation: str, vllm_scores: Scores, stand_in_scores: Scores
) -> None:
    # Same tokenizer, same chat template: each response is the same tokens on both.
    assert (
        vllm_scores[conversation][0]["response_token_counts"]
        == stand_in_scores[conversation][0]["response_token_counts"]
    )
