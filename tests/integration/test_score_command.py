"""`memscore score` against the real reference model (SmolLM2) and the synthetic one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.ports import free_port

DOG_EVENT: dict[str, Any] = {
    "event_id": "e2e-dog",
    "conversation_id": "conv-dog",
    "system_prompt": "You are a helpful assistant.",
    "entries": [
        {"type": "memory", "key": "home", "content": "The user lives in Lisbon."},
        {"type": "memory", "key": "dog", "content": "The user's dog is named Biscuit."},
        {"type": "memory", "key": "diet", "content": "The user is vegetarian."},
        {"type": "memory", "key": "job", "content": "The user works as a nurse."},
        {"type": "message", "role": "user", "content": "What is my dog called?"},
        {"type": "message", "role": "assistant", "content": "Your dog is called Biscuit."},
    ],
}


def score(tmp_path: Path, event: object, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "event.json"
    path.write_text(event if isinstance(event, str) else json.dumps(event))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSCORE_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", "score", str(path), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=240,
    )


@pytest.mark.slow
@pytest.mark.model
def test_the_memory_an_answer_rests_on_ranks_first_with_the_real_model(
    tmp_path: Path, smollm2_model_url: str
) -> None:
    result = score(
        tmp_path,
        DOG_EVENT,
        "--vllm-url",
        smollm2_model_url,
        "--model",
        "smollm2",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    response_entry = body["response_entry_indices"][0]
    assert response_entry == 5
    column = [row[0] for row in body["matrix"]]
    assert body["memory_keys"][column.index(max(column))] == "dog"
    assert max(column) > 2 * sorted(column)[-2]  # a clear margin over the distractors


@pytest.mark.slow
@pytest.mark.model
def test_table_format_ranks_memories(tmp_path: Path, smollm2_model_url: str) -> None:
    result = score(tmp_path, DOG_EVENT, "--vllm-url", smollm2_model_url, "--model", "smollm2")
    assert result.returncode == 0, result.stderr
    ranking = result.stdout.split("Memories by importance")[1].splitlines()[2]
    assert ranking.split()[0] == "1"
    assert ranking.split()[-1] == "dog"


@pytest.mark.slow
@pytest.mark.model
def test_a_conversation_over_the_context_length_is_a_server_refusal(
    tmp_path: Path, smollm2_model_url: str
) -> None:
    huge = json.loads(json.dumps(DOG_EVENT))
    huge["entries"][0]["content"] = "Lisbon is lovely. " * 5000
    result = score(tmp_path, huge, "--vllm-url", smollm2_model_url, "--model", "smollm2")
    assert result.returncode == 1
    assert "context length" in result.stderr


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("{not json", "not valid JSON"),
        ({**DOG_EVENT, "entries": [DOG_EVENT["entries"][4], DOG_EVENT["entries"][5]]}, "no memory"),
        ({**DOG_EVENT, "entries": DOG_EVENT["entries"][:5]}, "no assistant"),
        ({**DOG_EVENT, "conversation_id": 5}, "conversation_id"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, event: object, message: str) -> None:
    result = score(tmp_path, event, "--vllm-url", "http://127.0.0.1:1")
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["http://[bad", "ftp://127.0.0.1:1", "http://user:secret@:x"])
def test_a_bad_server_url_is_one_line_and_exit_2(tmp_path: Path, url: str) -> None:
    result = score(tmp_path, DOG_EVENT, "--vllm-url", url)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1)
    assert "model server URL #1" in result.stderr
    assert "secret" not in result.stderr


def test_missing_file_is_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worker", "score", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, "cannot read" in result.stderr) == (2, True)


def test_unreachable_server_is_exit_1(tmp_path: Path) -> None:
    result = score(tmp_path, DOG_EVENT, "--vllm-url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "ConnectError" in result.stderr


def test_synthetic_server_scores_json(tmp_path: Path, synthetic_model_url: str) -> None:
    result = score(
        tmp_path,
        DOG_EVENT,
        "--vllm-url",
        synthetic_model_url,
        "--model",
        "synthetic",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert set(body) >= {
        "conversation_id",
        "memory_keys",
        "memory_weights",
        "response_entry_indices",
        "response_scores",
        "matrix",
    }
    assert body["conversation_id"] == "conv-dog"
    assert len(body["matrix"]) == 4


@pytest.mark.parametrize("strategy", ["hierarchical", "surrogate", "hybrid", "auto"])
def test_strategy_flag_chooses_the_strategy(
    tmp_path: Path, synthetic_model_url: str, strategy: str
) -> None:
    args = ["--vllm-url", synthetic_model_url, "--model", "synthetic", "--format", "json"]
    result = score(tmp_path, DOG_EVENT, *args, "--strategy", strategy)
    assert result.returncode == 0, result.stderr
    # auto without a cap is exact leave-one-out
    assert json.loads(result.stdout)["strategy"] == ("loo" if strategy == "auto" else strategy)


def test_surrogate_rows_are_reported_as_estimates(tmp_path: Path, synthetic_model_url: str) -> None:
    args = ["--vllm-url", synthetic_model_url, "--model", "synthetic", "--format", "json"]
    result = score(tmp_path, DOG_EVENT, *args, "--strategy", "surrogate")
    assert json.loads(result.stdout)["row_kinds"] == ["estimated"] * 4


def test_max_prompt_tokens_caps_what_the_conversation_spends(
    tmp_path: Path, synthetic_model_url: str
) -> None:
    args = ["--vllm-url", synthetic_model_url, "--model", "synthetic", "--format", "json"]
    full = json.loads(score(tmp_path, DOG_EVENT, *args).stdout)
    cap = full["prompt_tokens"] // 2
    capped = json.loads(score(tmp_path, DOG_EVENT, *args, "--max-prompt-tokens", str(cap)).stdout)
    assert (capped["prompt_tokens"] <= cap, capped["capped"]) == (True, True)
