"""Fixtures for the deploy/ checks: rendered overlays, one test run per overlay."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import OVERLAYS, Manifest, overlay_path, render


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def manifests(overlay: str) -> list[Manifest]:
    """Every object `kubectl kustomize deploy/k8s/overlays/<overlay>` renders."""
    return render(overlay_path(overlay))
