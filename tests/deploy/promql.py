"""Metric names out of PromQL, for checking queries against what the worker exports.

Not a parser: it blanks out what cannot hold a metric name (strings, label
matchers, range and subquery brackets, `by (...)`-style label lists), then
keeps the identifiers that are not keywords and not called like functions.
That is enough for the expressions in deploy/ and is pinned by test_promql.py.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# Not preceded by a word character or a dot, so 1e3 and 5m yield nothing.
_IDENTIFIER = re.compile(r"(?<![\w.:$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan"}
)
# Grafana's label_values(metric_or_selector, label) variable query.
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric (and recorded-series) names an expression reads."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        called = text[match.end() :].lstrip().startswith("(")
        if not called and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def grafana_variable_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values or PromQL)."""
    match = _LABEL_VALUES.match(query)
    return metric_names(match.group("selector") if match else query)
