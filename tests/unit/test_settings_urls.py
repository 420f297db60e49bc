"""MEMSCORE_VLLM_URLS: a URL may carry credentials, so none is ever echoed or shown."""

from __future__ import annotations

import pytest

from worker.errors import FatalError
from worker.settings import load_settings

USER, PASSWORD = "svc-memscore", "hunter2-s3cret"


def leaks(text: str) -> list[str]:
    return [secret for secret in (USER, PASSWORD) if secret in text]


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://{USER}:{PASSWORD}@vllm:8000",
        f"http://{USER}:{PASSWORD}@[bad",
        f"http://{USER}:{PASSWORD}@vllm:port",
        f"{USER}:{PASSWORD}@vllm:8000",
    ],
)
def test_a_bad_model_server_url_setting_is_named_by_position_not_echoed(url: str) -> None:
    with pytest.raises(FatalError) as info:
        load_settings(vllm_urls=f"http://a:8000,{url}")
    assert (leaks(info.value.message), "entry 2 of 2" in info.value.message) == ([], True)


def test_model_server_urls_stay_out_of_the_settings_repr() -> None:
    settings = load_settings(vllm_urls=f"http://{USER}:{PASSWORD}@vllm:8000")
    assert (leaks(repr(settings) + str(settings)), settings.vllm_urls) == (
        [],
        [f"http://{USER}:{PASSWORD}@vllm:8000"],
    )
