"""Implementations of the CLI subcommands (kept out of cli.py so --help stays fast)."""
