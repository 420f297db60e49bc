"""`python -m bench` (`make bench`): run the benchmarks, print JSON lines and a table.

stdout: one JSON object per benchmark, one line each. stderr: a human-readable table.
Exit status: 0 when every target is met, 1 when one is missed, 2 when a benchmark failed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable

from bench import client_overhead, saturation, scaling, strategies
from bench.report import Result, machine

BENCHMARKS: dict[str, Callable[[], Result]] = {
    "client_overhead": client_overhead.run,
    "scaling": scaling.run,
    "saturation": saturation.run,
    "strategies": strategies.run,
}
DETAIL_TABLES: dict[str, Callable[[Result], str]] = {
    "scaling": scaling.table,
    "strategies": strategies.table,
}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}")
    # strategies runs a real model for tens of minutes: only when named.
    names = args.names or [name for name in BENCHMARKS if name != "strategies"]
    host = machine()
    say(
        f"machine: {host['nproc']} CPUs ({host['cpu_model']}), Python {host['python']}, "
        f"numpy {host['numpy']}, msgspec {host['msgspec']}, orjson {host['orjson']}"
    )
    started = time.monotonic()
    missed: list[str] = []
    failed: list[str] = []
    for name in names:
        say(f"\nrunning {name} ...")
        began = time.monotonic()
        try:
            result = BENCHMARKS[name]()
        except Exception:
            failed.append(name)
            say(f"{name} failed:\n{traceback.format_exc()}")
            continue
        result.figures["seconds"] = round(time.monotonic() - began, 1)
        result.figures["machine"] = host
        print(result.as_json(), flush=True)
        say(result.table())
        if name in DETAIL_TABLES:
            say(DETAIL_TABLES[name](result))
        missed += [f"{name}: {target}" for target in result.missed()]
    say(f"\n{len(names)} benchmarks in {time.monotonic() - started:.0f} s")
    for line in missed:
        say(f"MISSED {line}")
    for name in failed:
        say(f"FAILED {name}")
    if failed:
        return 2
    return 1 if missed else 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
