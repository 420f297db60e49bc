"""The model server's pure parts: synthetic tokenizer, simulated prefill, flags, outages."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.model_server.backends.shared_prefill import SharedPrefill
from devstack.model_server.backends.synthetic_tokenizer import SyntheticTokenizer
from devstack.model_server.faults import Outage
from devstack.model_server.process import FlagValue, flag_args

TOKENIZER = SyntheticTokenizer()


@given(st.text())
def test_tokenizing_loses_nothing(text: str) -> None:
    assert TOKENIZER.decode(TOKENIZER.encode(text)) == text


def test_words_keep_their_leading_space() -> None:
    pieces = [TOKENIZER.decode_token(t) for t in TOKENIZER.encode("Your dog, Biscuit!")]

    assert pieces == ["Your", " dog", ",", " Biscuit", "!"]


def test_a_split_character_decodes_piecewise_as_replacement_characters() -> None:
    pieces = [TOKENIZER.decode_token(t) for t in TOKENIZER.encode("Zoë")]

    assert pieces == ["Zo", "\ufffd", "\ufffd"]


def test_chatml_special_tokens_are_single_tokens() -> None:
    assert TOKENIZER.encode("<|im_start|>user<|im_end|>")[::2] == [1, 2]


def test_ids_are_the_same_in_every_tokenizer() -> None:
    assert SyntheticTokenizer().encode("Biscuit") == TOKENIZER.encode("Biscuit")


def test_spellings_of_one_word_share_a_key() -> None:
    keys = {TOKENIZER.word_key(TOKENIZER.encode(word)[0]) for word in (" Biscuit", "biscuit")}

    assert len(keys) == 1


async def finish_times(prefill: SharedPrefill, sizes: list[int]) -> list[float]:
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def one(size: int) -> float:
        await prefill.process(size)
        return loop.time() - started

    return list(await asyncio.gather(*(one(size) for size in sizes)))


async def test_concurrent_jobs_split_the_capacity() -> None:
    times = await finish_times(SharedPrefill(1000, None), [100, 100])

    # Both run at 500 tokens/s: done at 0.2 s, not 0.1 s.
    assert times == pytest.approx([0.2, 0.2], abs=0.05)


async def test_a_short_job_leaves_the_whole_capacity_to_a_long_one() -> None:
    times = await finish_times(SharedPrefill(1000, None), [50, 150])

    # Shared until 0.1 s (50 tokens each), then the long one alone for 0.1 s more.
    assert times == pytest.approx([0.1, 0.2], abs=0.05)


async def test_a_full_batch_makes_the_next_job_wait() -> None:
    prefill = SharedPrefill(1000, max_batch_tokens=150)

    times = await finish_times(prefill, [100, 100])

    assert times == pytest.approx([0.1, 0.2], abs=0.05)
    assert prefill.processed_tokens == pytest.approx(200)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"prefill_tokens_per_second": 5000}, ["--prefill-tokens-per-second", "5000"]),
        ({"legacy_errors": True}, ["--legacy-errors"]),
        ({"legacy_errors": False, "api_key": None}, []),
        ({"outage": ["1:2", "5:6"]}, ["--outage", "1:2", "--outage", "5:6"]),
    ],
)
def test_flag_args(flags: dict[str, FlagValue], expected: list[str]) -> None:
    assert flag_args(flags) == expected


def test_outage_windows_parse() -> None:
    assert Outage.parse("5:12.5") == Outage(5.0, 12.5)


@pytest.mark.parametrize("text", ["5", "5:", "7:3", "a:b", "-1:2"])
def test_malformed_outage_windows_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="outage"):
        Outage.parse(text)
