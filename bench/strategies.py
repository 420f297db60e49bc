"""Fidelity and cost of the scoring strategies against exact leave-one-out on the same model.

Every strategy scores the same conversations (bench/strategy_conversations.py) through the
worker's own ConversationScorer and InferenceClient against a devstack model server: the
real SmolLM2-135M (N = 8..64, a few conversations: a forward pass is ~0.3-2 s on 2 cores)
and the synthetic backend (N up to 256), and real vLLM on the same weights when named
(MEMSCORE_BENCH_BACKENDS=vllm). Identical prompts are answered once and shared
between strategies (a deterministic server gives the same answer twice), so the costs
below are what each strategy would have sent, not what the machine computed.

Per conversation and strategy, against LOO: prompt tokens and requests relative to LOO,
Spearman of memory importance (row sums) over the memories carrying >= 5% of the exact
importance, top-1 agreement per response (the memory with the largest entry of each
column), and the exact importance mass of the strategy's top-k memories over that of the
exact top-k (k = the number of memories carrying >= 5%). ``auto`` runs under a cap of 40%
of what LOO spent on that conversation. Redundant pairs: each member's importance, over
what leaving out both at once costs the conversation.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.report import Result, Target, rounded
from bench.strategy_conversations import BenchConversation, bench_conversation
from devstack.model_server import running_model_server
from devstack.vllm_cpu.cli import SERVED_NAME
from worker.events import ConversationEvent
from worker.inference.client import ClientConfig, InferenceClient, PromptScores
from worker.inference.limiter import InflightLimiter
from worker.inference.scorer import ConversationScorer, ScoringOptions
from worker.scoring import ConversationScore, MemoryScore
from worker.scoring.strategies import (
    Auto,
    Hierarchical,
    Hybrid,
    LeaveOneOut,
    Strategy,
    Surrogate,
)

AUTO_CAP_SHARE = 0.4
IMPORTANT_SHARE = 0.05
# (backend, memories, conversations); MEMSCORE_BENCH_QUICK=1 keeps only the small ones.
# SmolLM2 on 2 shared cores scores ~80-100 prompt tokens/s: N = 64 first (the target),
# two conversations there, one at N = 32.
GRID: tuple[tuple[str, int, int], ...] = (
    ("smollm2", 64, 2),
    ("smollm2", 8, 2),
    ("smollm2", 16, 2),
    ("smollm2", 32, 1),
    # Real vLLM (vllm-cpu, the same SmolLM2 weights): MEMSCORE_BENCH_BACKENDS=vllm.
    ("vllm", 64, 1),
    ("vllm", 16, 1),
    ("vllm", 32, 1),
    ("vllm", 48, 1),
    ("synthetic", 8, 4),
    ("synthetic", 16, 4),
    ("synthetic", 32, 4),
    ("synthetic", 48, 4),
    ("synthetic", 64, 4),
    ("synthetic", 128, 3),
    ("synthetic", 256, 2),
)
STRATEGIES: dict[str, Strategy] = {
    "hierarchical@0.5": Hierarchical(threshold=0.5),
    "hierarchical@1": Hierarchical(threshold=1.0),
    "hierarchical@2": Hierarchical(threshold=2.0),
    "hierarchical@1/b4": Hierarchical(threshold=1.0, branching=4),
    "surrogate@16": Surrogate(ablations=16),
    "surrogate@24": Surrogate(ablations=24),
    "surrogate@32": Surrogate(ablations=32),
    "hybrid@8": Hybrid(surrogate=Surrogate(ablations=8)),
    "hybrid@16": Hybrid(surrogate=Surrogate(ablations=16)),
    "hybrid@16 5%": Hybrid(surrogate=Surrogate(ablations=16), refine_share=0.05),
}
#: Run under a cap of AUTO_CAP_SHARE of what LOO spent: what auto can choose between.
CAPPED: dict[str, Strategy] = {
    "auto@40%": Auto(),
    "hierarchical@1 cap40%": Hierarchical(),
    "surrogate@32 cap40%": Surrogate(ablations=32),
    "hybrid@16 cap40%": Hybrid(),
}

#: The cap sweep behind auto's rule (auto.py, HYBRID_FROM_REQUESTS): per backend, the
#: memories, the caps (shares of what LOO spent) and conversations per point. The
#: surrogate, the hybrid and auto run under each cap.
SWEEP: dict[str, tuple[tuple[int, ...], tuple[float, ...], int]] = {
    "synthetic": ((16, 20, 24, 32, 40, 48, 64, 96), (0.25, 0.4, 0.5, 0.6, 0.75, 0.9), 6),
    "vllm": ((32, 40, 48, 64), (0.25, 0.3, 0.4), 1),
}
SWEPT: dict[str, Strategy] = {
    "surrogate@32": Surrogate(ablations=32),
    "hybrid@16": Hybrid(),
    "auto": Auto(),
}


class SharedAnswers:
    """A PromptScorer that asks the server once per distinct prompt (in flight included)."""

    def __init__(self, client: InferenceClient) -> None:
        self._client = client
        self._answers: dict[tuple[tuple[str, str], ...], asyncio.Future[PromptScores]] = {}

    async def prompt_logprobs(
        self, *, model: str, messages: list[dict[str, str]], estimated_tokens: int
    ) -> PromptScores:
        key = tuple((m["role"], m["content"]) for m in messages)
        if key not in self._answers:
            self._answers[key] = asyncio.ensure_future(
                self._client.prompt_logprobs(
                    model=model, messages=messages, estimated_tokens=estimated_tokens
                )
            )
        return await self._answers[key]


@dataclass(frozen=True)
class Fixed:
    """Sends the given ablations (memory positions) and keeps their divergence rows."""

    ablations: tuple[frozenset[int], ...]
    rows: list[Any] = field(default_factory=list)
    name = "fixed"

    def plan(self, conversation: Any, answers: Any, budget: int) -> list[frozenset[int]]:
        return [a for a in self.ablations if a not in answers][:budget]

    def score(self, conversation: Any, answers: Any) -> MemoryScore:
        self.rows.extend(conversation.row(a, answers) for a in self.ablations)
        return LeaveOneOut().score(conversation, answers)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2:
        return float("nan")
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def compare(
    exact: ConversationScore, other: ConversationScore, redundant: Sequence[int] = ()
) -> dict[str, float]:
    e, o = exact.score, other.score
    ew, ow = e.matrix.sum(axis=1), o.matrix.sum(axis=1)
    important = np.flatnonzero(ew >= IMPORTANT_SHARE * ew.sum()) if ew.sum() > 0 else []
    # The redundant pair is where LOO and an estimate of joint effects differ by design.
    plain = [int(i) for i in important if int(i) not in redundant]
    k = len(important)
    top_other = np.argsort(-ow, kind="stable")[:k]
    top_exact = np.argsort(-ew, kind="stable")[:k]
    columns = [j for j in range(e.matrix.shape[1]) if e.matrix[:, j].max() > 0]
    agree = [int(np.argmax(e.matrix[:, j]) == np.argmax(o.matrix[:, j])) for j in columns]
    return {
        "tokens_ratio": other.prompt_tokens / exact.prompt_tokens,
        "requests_ratio": other.requests / exact.requests,
        "requests": other.requests,
        "spearman_important": spearman(ew[important].tolist(), ow[important].tolist()),
        "spearman_important_without_redundant": spearman(ew[plain].tolist(), ow[plain].tolist()),
        "spearman_all": spearman(ew.tolist(), ow.tolist()),
        "top1": float(np.mean(agree)) if agree else float("nan"),
        "mass_recovered": float(ew[top_other].sum() / ew[top_exact].sum()) if k else 1.0,
    }


async def _score(
    shared: SharedAnswers, model: str, event: ConversationEvent, strategy: Strategy, cap: int | None
) -> ConversationScore:
    options = ScoringOptions(default_model=model, strategy=strategy, max_prompt_tokens=cap)
    return await ConversationScorer(shared, options).score(event)


async def _conversation(
    shared: SharedAnswers, model: str, case: BenchConversation
) -> dict[str, Any]:
    event = ConversationEvent.model_validate(case.event)
    exact = await _score(shared, model, event, LeaveOneOut(), None)
    found: dict[str, Any] = {"loo": {"requests": exact.requests, "tokens": exact.prompt_tokens}}
    results = {"loo": exact}
    for name, strategy in STRATEGIES.items():
        results[name] = await _score(shared, model, event, strategy, None)
    cap = int(AUTO_CAP_SHARE * exact.prompt_tokens)
    for name, strategy in CAPPED.items():
        results[name] = await _score(shared, model, event, strategy, cap)
    keys = exact.score.memory_keys
    pairs = [(keys.index(a), keys.index(b)) for a, b in case.redundant_pairs]
    members = [p for pair in pairs for p in pair]
    for name, result in results.items():
        if name != "loo":
            found[name] = compare(exact, result, members) | {"chose": result.score.strategy}
    both = Fixed(tuple(frozenset(p) for p in pairs))
    await _score(shared, model, event, both, None)
    joint = [float(row.sum()) for row in both.rows]
    found["redundant"] = {
        name: float(
            np.mean(
                [
                    (r.score.matrix[a].sum() + r.score.matrix[b].sum()) / 2 / max(j, 1e-9)
                    for (a, b), j in zip(pairs, joint, strict=True)
                ]
            )
        )
        for name, r in results.items()
    }
    found["redundant_joint_nats"] = float(np.mean(joint))
    return found


async def _sweep(
    answers: Callable[[int, int], SharedAnswers],
    model: str,
    memories: int,
    conversations: int,
    shares: Sequence[float],
) -> list[dict[str, Any]]:
    """Each SWEPT strategy under each cap, against LOO, on ``conversations`` conversations."""
    per: dict[float, list[dict[str, Any]]] = {share: [] for share in shares}
    for seed in range(conversations):
        shared = answers(memories, seed)
        event = ConversationEvent.model_validate(bench_conversation(seed, memories).event)
        exact = await _score(shared, model, event, LeaveOneOut(), None)
        # A cap of one token leaves LOO the baseline alone: its length, the request unit.
        length = (await _score(shared, model, event, LeaveOneOut(), 1)).prompt_tokens
        for share in shares:
            cap = int(share * exact.prompt_tokens)
            found: dict[str, Any] = {"request_budget": (cap - length) // length}
            for name, strategy in SWEPT.items():
                result = await _score(shared, model, event, strategy, cap)
                found[name] = compare(exact, result) | {"chose": result.score.strategy}
                if name == "auto":
                    found["auto_tokens_over_cap"] = result.prompt_tokens / cap
            per[share].append(found)
    return [
        {
            "memories": memories,
            "cap_share": share,
            "conversations": conversations,
            **_mean(rows),
            # The cap holds for every conversation, not on average: the largest.
            "auto_tokens_over_cap": max(row["auto_tokens_over_cap"] for row in rows),
        }
        for share, rows in per.items()
    ]


async def _backend(
    backend: str, url: str, model: str, sizes: list[tuple[int, int]], swept: Sequence[int] = ()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The grid's rows for ``sizes``, then the cap sweep's for the memories in ``swept``."""
    limiter = InflightLimiter(4, 1 << 20)
    rows = []
    sweep: list[dict[str, Any]] = []
    cache: dict[tuple[int, int], SharedAnswers] = {}
    async with InferenceClient(ClientConfig(base_urls=[url]), limiter) as client:

        def answers(memories: int, seed: int) -> SharedAnswers:
            # The grid and the sweep score the same conversations: each prompt once. Only
            # an N still to be swept is kept; the others' answers are freed when done.
            if memories not in swept:
                return SharedAnswers(client)
            return cache.setdefault((memories, seed), SharedAnswers(client))

        for memories, conversations in sizes:
            per = [
                await _conversation(answers(memories, s), model, bench_conversation(s, memories))
                for s in range(conversations)
            ]
            rows.append({"memories": memories, "conversations": conversations, **_mean(per)})
            print(f"  {backend} N={memories}: {json.dumps(rows[-1])}", file=sys.stderr, flush=True)
        if swept:
            _, shares, conversations = SWEEP[backend]
            for memories in swept:
                found = await _sweep(answers, model, memories, conversations, shares)
                sweep += found
                for row in found:
                    print(f"  {backend} sweep: {json.dumps(row)}", file=sys.stderr, flush=True)
                for key in [k for k in cache if k[0] == memories]:
                    del cache[key]  # the prompts of this N are not asked again
    return rows, sweep


def _mean(per: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in per[0].items():
        if isinstance(value, dict):
            out[name] = {
                k: (
                    rounded(float(np.nanmean([p[name][k] for p in per])))
                    if not isinstance(v, str)
                    else sorted({p[name][k] for p in per})
                )
                for k, v in value.items()
            }
        else:
            out[name] = rounded(float(np.mean([p[name] for p in per])))
    return out


def run() -> Result:
    quick = os.environ.get("MEMSCORE_BENCH_QUICK") == "1"
    only = os.environ.get("MEMSCORE_BENCH_BACKENDS", "synthetic,smollm2").split(",")
    # MEMSCORE_BENCH_MEMORIES=32,48: only those N (each backend's own grid points).
    wanted = {int(n) for n in os.environ.get("MEMSCORE_BENCH_MEMORIES", "").split(",") if n}
    # MEMSCORE_BENCH_PARTS=grid or sweep: only the strategy grid or only the cap sweep.
    parts = os.environ.get("MEMSCORE_BENCH_PARTS", "grid,sweep").split(",")
    rows: list[dict[str, Any]] = []
    sweep: list[dict[str, Any]] = []
    for backend in ("synthetic", "smollm2", "vllm"):
        sizes = [
            (n, c)
            for b, n, c in GRID
            if b == backend and (not quick or n <= 16) and (not wanted or n in wanted)
        ]
        sizes = sizes if "grid" in parts else []
        swept = [
            n
            for n in (SWEEP[backend][0] if backend in SWEEP else ())
            if "sweep" in parts and not quick and (not wanted or n in wanted)
        ]
        if backend not in only or not (sizes or swept):
            continue
        flags: dict[str, Any] = {"prefill_tokens_per_second": 50_000_000}
        # Real vLLM (installed into ~/.cache/memscore by its first start) serves the
        # SmolLM2 weights under the stand-in's name.
        model = SERVED_NAME if backend == "vllm" else backend
        with running_model_server(backend, **(flags if backend == "synthetic" else {})) as url:
            found, swept_rows = asyncio.run(_backend(backend, url, model, sizes, swept))
        rows += [{"backend": backend, **row} for row in found]
        sweep += [{"backend": backend, **row} for row in swept_rows]
    figures: dict[str, Any] = {"rows": rows, "sweep": sweep}
    large = [r for r in rows if r["memories"] >= 64]
    # Auto never spends more than LOO, in the grid (a 40% cap) or anywhere in the sweep.
    auto_ratios = [r["auto@40%"]["tokens_ratio"] for r in rows]
    auto_ratios += [r["auto"]["tokens_ratio"] for r in sweep]
    if auto_ratios:
        figures["auto_max_tokens_ratio"] = max(auto_ratios)
    if large:
        figures["auto_n64_tokens_ratio"] = max(r["auto@40%"]["tokens_ratio"] for r in large)
        figures["auto_n64_top1"] = min(r["auto@40%"]["top1"] for r in large)
        figures["auto_n64_spearman_important"] = min(
            r["auto@40%"]["spearman_important"] for r in large
        )
    if sweep:
        # Auto's prompt tokens over its cap, the largest of any conversation: <= 1 holds it.
        figures["sweep_auto_max_tokens_over_cap"] = max(r["auto_tokens_over_cap"] for r in sweep)
        # How far auto's choice fell short of the better of the two it chooses between
        # (a Spearman is NaN where every rank ties; such cells do not count).
        figures["sweep_auto_spearman_shortfall"] = float(
            np.nanmean(
                [
                    np.nanmax(
                        [
                            r["surrogate@32"]["spearman_important"],
                            r["hybrid@16"]["spearman_important"],
                        ]
                    )
                    - r["auto"]["spearman_important"]
                    for r in sweep
                ]
            )
        )
    targets = [Target("auto_max_tokens_ratio", "<=", 1.0)] if auto_ratios else []
    if large:
        targets += [
            Target("auto_n64_tokens_ratio", "<=", AUTO_CAP_SHARE),
            Target("auto_n64_top1", ">=", 0.95),
            Target("auto_n64_spearman_important", ">=", 0.9),
        ]
    if sweep:
        targets.append(Target("sweep_auto_max_tokens_over_cap", "<=", 1.0))
    return Result("strategies", figures, targets)


def table(result: Result) -> str:
    lines = [
        "backend    N  strategy               tokens  requests  top1  rho(>=5%)  "
        "rho(>=5%, no pair)  mass  redundant"
    ]
    for row in result.figures["rows"]:
        for name in [*CAPPED, *STRATEGIES]:
            r = row[name]
            lines.append(
                f"{row['backend']:<9} {row['memories']:>3}  {name:<21} "
                f"{r['tokens_ratio']:>7.3f} {r['requests']:>8.1f}  {r['top1']:>5.2f}  "
                f"{r['spearman_important']:>8.2f}  "
                f"{r['spearman_important_without_redundant']:>17.2f}  "
                f"{r['mass_recovered']:>5.2f}  {row['redundant'][name]:>6.2f}"
            )
        lines.append(
            f"{row['backend']:<9} {row['memories']:>3}  loo                  1.000 "
            f"{row['loo']['requests']:>8.1f}  redundant pair: each member "
            f"{row['redundant']['loo']:.2f} of the pair's joint "
            f"{row['redundant_joint_nats']:.1f} nats"
        )
    if result.figures["sweep"]:
        lines.append(
            "cap sweep: top1 / rho(>=5%) / tokens against LOO; B = requests the cap allows\n"
            "backend    N   cap     B  surrogate@32         hybrid@16            auto (chose)"
        )
    for row in result.figures["sweep"]:
        cells = [
            f"{row[n]['top1']:.2f} / {row[n]['spearman_important']:>5.2f} / "
            f"{row[n]['tokens_ratio']:.2f}"
            for n in SWEPT
        ]
        lines.append(
            f"{row['backend']:<9} {row['memories']:>3}  {row['cap_share']:.2f}  "
            f"{row['request_budget']:>4.1f}  {cells[0]:<19}  {cells[1]:<19}  {cells[2]} "
            f"({'/'.join(row['auto']['chose'])})"
        )
    return "\n".join(lines)
