"""The parser's C-level pass over a well-formed body gives what the position walk gives.

parse_prompt_logprobs reads the common shape (one candidate per position, or the prompt's
ids known) in a few C-level passes and leaves everything else to the position-by-position
walk. With the fast pass switched off, every body must give the same stream or the same error.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from tests.unit import vllm_shapes
from tests.unit.test_fuzz import FUZZ, bodies, positions
from worker.errors import InferenceResponseError
from worker.inference import response
from worker.inference.response import parse_prompt_logprobs

TEXTS = ["<|im_start|>", "user", "\n", "Hi", " there", "<|im_end|>"]


def outcome(body: bytes, **options: Any) -> tuple[object, ...]:
    try:
        stream = parse_prompt_logprobs(body, **options)
    except InferenceResponseError as error:
        return (type(error), str(error))
    return (stream.token_ids.tolist(), np.nan_to_num(stream.logprobs).tolist(), stream.texts)


def same_with_and_without_the_fast_pass(body: bytes, **options: Any) -> None:
    fast = outcome(body, **options)
    with mock.patch.object(response, "_common_shape", return_value=None):
        walked = outcome(body, **options)
    assert fast == walked


def test_a_k0_body_takes_the_fast_pass() -> None:
    body = vllm_shapes.body(TEXTS, lambda i, t: -0.25 * i)
    with mock.patch.object(response, "_position_by_position", side_effect=AssertionError("walked")):
        stream = parse_prompt_logprobs(body)
    assert stream.texts[1:] == TEXTS[1:]


@FUZZ
@given(bodies, st.integers(0, 3), st.none() | st.lists(st.integers(-5, 2**70), max_size=8))
def test_any_body_parses_the_same_either_way(
    body: dict[str, Any], k: int, ids: list[int] | None
) -> None:
    same_with_and_without_the_fast_pass(
        json.dumps(body).encode(), requested_k=k, prompt_token_ids=ids
    )


@FUZZ
@given(st.data())
def test_a_real_body_with_one_odd_position_parses_the_same_either_way(
    data: st.DataObject,
) -> None:
    with_ids = data.draw(st.booleans())
    body = json.loads(
        vllm_shapes.body(TEXTS, top_k=data.draw(st.integers(0, 2)), with_ids=with_ids)
    )
    position = data.draw(st.integers(0, len(TEXTS) - 1))
    body["prompt_logprobs"][position] = data.draw(positions)
    if with_ids and data.draw(st.booleans()):
        body["prompt_token_ids"][position] = data.draw(st.integers(-5, 2**70))
    same_with_and_without_the_fast_pass(
        json.dumps(body).encode(), requested_k=data.draw(st.integers(0, 3))
    )


def test_an_id_handed_in_as_true_neither_matches_1_nor_spoils_later_bodies() -> None:
    ids = [5, 1, 2, 3, 4, 6]
    body = vllm_shapes.body(TEXTS, ids=ids, with_ids=True)
    handed_in = [5, True, 2, 3, 4, 6]  # as a /tokenize answer of JSON true would give
    assert outcome(body, prompt_token_ids=handed_in) == (
        InferenceResponseError,
        "prompt_logprobs[1] lacks the prompt token True",
    )
    assert outcome(body)[0] == ids
