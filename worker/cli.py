"""`memscore run | score | migrate` — the command-line entry points."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from worker import __version__


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memscore",
        description="Measure which memories an AI agent's responses actually used.",
    )
    parser.add_argument("--version", action="version", version=f"memscore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run",
        help="the worker daemon: Kafka in, PostgreSQL and a results topic out",
        description="Run the scoring daemon. Configured through MEMSCORE_* environment variables.",
    )

    score = sub.add_parser(
        "score",
        help="score one event file against a live model server",
        description="Score one conversation-closed event file (JSON) against a vLLM-compatible "
        "server, offline from Kafka and PostgreSQL.",
    )
    score.add_argument(
        "file", help="event file (JSON, schema v1 or a CloudEvents envelope); - for stdin"
    )
    score.add_argument(
        "--vllm-url",
        action="append",
        dest="vllm_urls",
        metavar="URL",
        help="model server base URL (repeatable; default: MEMSCORE_VLLM_URLS)",
    )
    score.add_argument("--model", help="model name (default: the event's, then MEMSCORE_MODEL)")
    score.add_argument("--format", choices=("table", "json"), default="table")
    score.add_argument(
        "--strategy",
        choices=("loo", "hierarchical", "surrogate", "hybrid", "auto"),
        help="which ablations to send (default: MEMSCORE_STRATEGY, else loo)",
    )
    score.add_argument(
        "--max-prompt-tokens",
        type=int,
        metavar="N",
        help="prompt tokens the conversation may spend (default: "
        "MEMSCORE_MAX_PROMPT_TOKENS_PER_CONVERSATION, else no cap)",
    )

    sub.add_parser(
        "migrate",
        help="upgrade the database schema to the latest revision",
        description="Apply Alembic migrations up to head against MEMSCORE_DATABASE_URL.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "score":
        from worker.commands.score import score_command

        return score_command(
            args.file,
            vllm_urls=args.vllm_urls,
            model=args.model,
            fmt=args.format,
            strategy=args.strategy,
            max_prompt_tokens=args.max_prompt_tokens,
        )
    if args.command == "migrate":
        from worker.commands.migrate import migrate_command

        return migrate_command()
    # Until the event loop installs its own handlers, a SIGTERM (a rollout right
    # after start) means "exit cleanly": nothing has been consumed yet.
    signal.signal(signal.SIGTERM, _exit_before_start)
    from worker.commands.run import run_command

    return run_command()


def _exit_before_start(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
