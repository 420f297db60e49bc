"""The benchmark code still runs: client_overhead once, at a small size, without judging time."""

from __future__ import annotations

import json

from bench import client_overhead

FIELDS = {
    "benchmark",
    "prompt_tokens",
    "memories",
    "requests",
    "positions",
    "json_decoder",
    "json_decode_ms_per_response",
    "worker_ms_per_response",
    "positions_per_second",
    "ratio_to_json_decode",
    "targets",
    "targets_met",
}


def test_client_overhead_reports_its_figures_and_targets() -> None:
    result = client_overhead.run(prompt_tokens=1024, memories=2, rounds=1)
    record = json.loads(result.as_json())
    assert sorted(FIELDS - set(record)) == []
    assert record["requests"] == 3  # the baseline and one ablation per memory
    assert sorted(record["targets"]) == [
        "positions_per_second >= 1.5e+06",
        "ratio_to_json_decode <= 2",
    ]
