"""Rendering deploy/k8s overlays with `kubectl kustomize`, and finding things in them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import kubectl

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]

_rendered: dict[Path, list[Manifest]] = {}


def render(kustomization: Path) -> list[Manifest]:
    """`kubectl kustomize DIR` as a list of objects (cached per directory)."""
    if kustomization not in _rendered:
        result = subprocess.run(
            [kubectl(), "kustomize", str(kustomization)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if result.returncode != 0:
            pytest.fail(f"kubectl kustomize {kustomization} failed:\n{result.stderr}")
        _rendered[kustomization] = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return _rendered[kustomization]


def overlay_path(name: str) -> Path:
    return DEPLOY / "k8s" / "overlays" / name


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if name is None or m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    """(kind/name, pod spec) of every workload."""
    for m in manifests:
        if m["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]["spec"]


def worker_container(manifests: list[Manifest]) -> Manifest:
    containers = one(manifests, "Deployment", "memscore")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "memscore")


def settings(manifests: list[Manifest]) -> dict[str, str]:
    """The data of the ConfigMap the worker container takes its MEMSCORE_* settings from."""
    names = [
        source["configMapRef"]["name"]
        for source in worker_container(manifests).get("envFrom", [])
        if "configMapRef" in source
    ]
    assert len(names) == 1, f"the worker should read one settings ConfigMap, reads {names}"
    data: dict[str, str] = one(manifests, "ConfigMap", names[0]).get("data", {})
    return data
