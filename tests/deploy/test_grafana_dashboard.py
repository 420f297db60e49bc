"""deploy/grafana/memscore.json: valid, wired to a datasource variable, reading only
metrics the worker exports, and shipped unchanged as the sidecar's ConfigMap."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import DEPLOY, one, overlay_path, render
from tests.deploy.promql import grafana_variable_metric_names, metric_names
from tests.deploy.tools import promtool
from worker.observability.metrics import exported_metric_names

DASHBOARD = DEPLOY / "grafana" / "memscore.json"
DATASOURCE = "${datasource}"

Panel = dict[str, Any]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _panels(dashboard: dict[str, Any]) -> Iterator[Panel]:
    """Every panel, including those folded inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, set[str]]]:
    """(where, metric names) of every PromQL query: panel targets and variables."""
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", metric_names(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable ${variable['name']}", grafana_variable_metric_names(text)


def _family(sample_name: str) -> str:
    return re.sub(r"_(bucket|count|sum|total|info)$", "", sample_name)


def test_dashboard_is_a_current_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert (dashboard["uid"], dashboard["schemaVersion"] >= 36) == ("memscore", True)


def test_datasource_is_a_prometheus_template_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )


def test_every_panel_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    offenders = [
        panel["title"]
        for panel in _panels(dashboard)
        if panel["type"] != "row" and panel.get("datasource", {}).get("uid") != DATASOURCE
    ]
    assert offenders == []


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    offenders = [
        f"{panel['title']} {target['refId']}"
        for panel in _panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("datasource", {"uid": DATASOURCE}).get("uid") != DATASOURCE
    ]
    variables = [
        v["name"]
        for v in dashboard["templating"]["list"]
        if v["type"] == "query" and v["datasource"]["uid"] != DATASOURCE
    ]
    assert (offenders, variables) == ([], [])


def test_queries_read_only_metrics_the_worker_exports(dashboard: dict[str, Any]) -> None:
    unknown = [
        f"{where}: {name}"
        for where, names in _queries(dashboard)
        for name in sorted(names - exported_metric_names())
    ]
    assert unknown == []


def test_every_panel_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses each query as a recording rule, Grafana's interval macros filled in."""
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": re.sub(r"\$__(rate_)?interval", "5m", target["expr"]),
        }
        for i, target in enumerate(
            t for panel in _panels(dashboard) for t in panel.get("targets", [])
        )
    ]
    rule_file = tmp_path / "dashboard_queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(rule_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    """A metric added to worker/observability/metrics.py needs a place on the dashboard."""
    shown = {_family(name) for _, names in _queries(dashboard) for name in names}
    missing = sorted({_family(name) for name in exported_metric_names()} - shown)
    assert missing == [], f"add panels to {DASHBOARD.relative_to(DEPLOY.parent)} for {missing}"


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _panels(dashboard)]
    assert sorted(ids) == sorted(set(ids))


def test_dashboard_configmap_is_the_json_file_for_the_sidecar() -> None:
    configmap = one(render(DEPLOY / "grafana"), "ConfigMap", "memscore-dashboard")
    assert (configmap["metadata"]["labels"]["grafana_dashboard"], configmap["data"]) == (
        "1",
        {"memscore.json": DASHBOARD.read_text(encoding="utf-8")},
    )


def test_prod_overlay_ships_the_dashboard() -> None:
    configmap = one(render(overlay_path("prod")), "ConfigMap", "memscore-dashboard")
    assert configmap["data"]["memscore.json"] == DASHBOARD.read_text(encoding="utf-8")
