"""Write prometheusrule.yaml, the Prometheus Operator object, from rules.yaml.

rules.yaml is the single source (promtool checks and unit-tests it); the
PrometheusRule carries the same groups so kustomize can ship them. Run after
editing rules.yaml, from the repository root:

    .venv/bin/python deploy/prometheus/render_prometheusrule.py

tests/deploy fails while the two disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "rules.yaml"
TARGET = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from rules.yaml by render_prometheusrule.py - do not edit by hand.
# Edit rules.yaml (promtool checks and tests it), then run:
#   .venv/bin/python deploy/prometheus/render_prometheusrule.py
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as literal blocks, like the source."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render(rules_text: str) -> str:
    groups = yaml.safe_load(rules_text)["groups"]
    document: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "memscore",
            "labels": {
                "app.kubernetes.io/name": "memscore",
                "app.kubernetes.io/component": "worker",
            },
        },
        "spec": {"groups": groups},
    }
    body = yaml.dump(document, Dumper=_BlockDumper, sort_keys=False, width=120)
    return HEADER + body


def main() -> None:
    TARGET.write_text(render(SOURCE.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
