"""The external programs the deploy checks use; a test that needs a missing one is skipped."""

from __future__ import annotations

import shutil

import pytest


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip(
            "kubectl is not installed: the kustomize overlays cannot be rendered, so the "
            "Kubernetes manifest checks are skipped (install kubectl to run them)"
        )
    return path


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is not installed (Debian: apt-get install prometheus): the PromQL in "
            "deploy/prometheus and deploy/grafana is not checked or unit-tested by promtool"
        )
    return path
