"""Every rendered object is well-formed: built-in kinds against the Kubernetes
OpenAPI schemas that ship with kubernetes-validate, custom resources against a
minimal structural check of our own (their CRD schemas are not in that package)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import Manifest, of_kind

# The oldest Kubernetes minor we support, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())

_DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")


def _service_monitor(m: Manifest, everything: list[Manifest]) -> list[str]:
    spec = m.get("spec", {})
    problems = []
    match_labels = spec.get("selector", {}).get("matchLabels")
    if not isinstance(match_labels, dict) or not match_labels:
        problems.append("spec.selector.matchLabels must be a non-empty map")
        match_labels = {}
    services = [
        s
        for s in of_kind(everything, "Service")
        if match_labels.items() <= s["metadata"].get("labels", {}).items()
    ]
    if not services:
        problems.append(f"selects no Service (matchLabels {match_labels})")
    port_names = {p.get("name") for s in services for p in s["spec"]["ports"]}
    endpoints = spec.get("endpoints")
    if not isinstance(endpoints, list) or not endpoints:
        return [*problems, "spec.endpoints must be a non-empty list"]
    for i, endpoint in enumerate(endpoints):
        if endpoint.get("port") not in port_names:
            problems.append(
                f"endpoints[{i}].port {endpoint.get('port')!r} is no port of the Service"
            )
        for key in ("interval", "scrapeTimeout"):
            if key in endpoint and not _DURATION.match(str(endpoint[key])):
                problems.append(f"endpoints[{i}].{key} {endpoint[key]!r} is not a duration")
    return problems


def _prometheus_rule(m: Manifest, everything: list[Manifest]) -> list[str]:
    groups = m.get("spec", {}).get("groups")
    if not isinstance(groups, list) or not groups:
        return ["spec.groups must be a non-empty list"]
    problems = []
    for group in groups:
        if not isinstance(group.get("name"), str) or not isinstance(group.get("rules"), list):
            problems.append(f"group {group.get('name')!r} needs a name and a list of rules")
            continue
        for rule in group["rules"]:
            if ("record" in rule) == ("alert" in rule) or not isinstance(rule.get("expr"), str):
                problems.append(f"rule {rule} needs exactly one of record/alert, and an expr")
    return problems


def _scaled_object(m: Manifest, everything: list[Manifest]) -> list[str]:
    spec = m.get("spec", {})
    problems = []
    target = spec.get("scaleTargetRef", {}).get("name")
    if target not in {d["metadata"]["name"] for d in of_kind(everything, "Deployment")}:
        problems.append(f"scaleTargetRef.name {target!r} is no Deployment of this overlay")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= high):
        problems.append(f"replica counts must be integers with min <= max, not {low}..{high}")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        return [*problems, "spec.triggers must be a non-empty list"]
    for i, trigger in enumerate(triggers):
        if not isinstance(trigger.get("type"), str):
            problems.append(f"triggers[{i}].type must be a string")
        metadata = trigger.get("metadata", {})
        # KEDA's CRD types trigger metadata as map[string]string.
        not_strings = [k for k, v in metadata.items() if not isinstance(v, str)]
        if not_strings:
            problems.append(f"triggers[{i}].metadata values must be strings: {not_strings}")
        auth = trigger.get("authenticationRef", {}).get("name")
        if auth is not None and auth not in {
            t["metadata"]["name"] for t in of_kind(everything, "TriggerAuthentication")
        }:
            problems.append(f"triggers[{i}].authenticationRef {auth!r} is not rendered")
    return problems


def _trigger_authentication(m: Manifest, everything: list[Manifest]) -> list[str]:
    spec = m.get("spec", {})
    problems = []
    for entry in spec.get("secretTargetRef", []):
        if not {"parameter", "name", "key"} <= entry.keys():
            problems.append(f"secretTargetRef entry {entry} needs parameter, name and key")
    for entry in spec.get("env", []):
        if not {"parameter", "name"} <= entry.keys():
            problems.append(f"env entry {entry} needs parameter and name")
    if not spec.get("secretTargetRef") and not spec.get("env"):
        problems.append("spec names no credential source")
    return problems


StructuralCheck = Callable[[Manifest, list[Manifest]], list[str]]

CUSTOM_RESOURCES: dict[tuple[str, str], StructuralCheck] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _service_monitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): _prometheus_rule,
    ("keda.sh/v1alpha1", "ScaledObject"): _scaled_object,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): _trigger_authentication,
}


def _is_custom(m: Manifest) -> bool:
    return (m["apiVersion"], m["kind"]) in CUSTOM_RESOURCES


def _name(m: Manifest) -> str:
    return f"{m['kind']}/{m['metadata']['name']}"


def test_every_object_lands_in_the_one_overlay_namespace(
    overlay: str, manifests: list[Manifest]
) -> None:
    expected = {"dev": "memscore-dev", "prod": "memscore"}[overlay]
    assert {m["metadata"].get("namespace") for m in manifests} == {expected}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_kinds_match_the_kubernetes_schema(manifests: list[Manifest], version: str) -> None:
    problems: list[str] = []
    for m in manifests:
        if _is_custom(m):
            continue
        try:
            kubernetes_validate.validate(m, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{_name(m)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{_name(m)}: no schema for {m['apiVersion']} {m['kind']}; "
                "if it is a custom resource, add a structural check to CUSTOM_RESOURCES"
            )
    assert problems == []


def test_custom_resources_pass_their_structural_checks(manifests: list[Manifest]) -> None:
    problems = [
        f"{_name(m)}: {problem}"
        for m in manifests
        if _is_custom(m)
        for problem in CUSTOM_RESOURCES[(m["apiVersion"], m["kind"])](m, manifests)
    ]
    assert problems == []


def test_custom_resource_checks_reject_a_broken_object() -> None:
    broken: dict[str, Any] = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "missing"}, "triggers": [{"metadata": {"a": 1}}]},
    }
    assert len(_scaled_object(broken, [broken])) == 3
