"""Credentials in a model-server URL authenticate the requests and appear nowhere else.

An endpoint is named by host and port in metrics labels, log records, error messages
and results. Over the real loopback server: httpx is never mocked.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from tests.unit import vllm_shapes
from tests.unit.loopback_server import LoopbackServer, Reply, closed_port_url
from tests.unit.test_client import CHAT, OK, TEXTS, client_for, score
from worker.errors import InferenceUnavailable, MemscoreError
from worker.inference.endpoint import endpoints
from worker.observability.metrics import REGISTRY

USER, PASSWORD = "svc-memscore", "hunter2-s3cret"
SECRETS = (USER, PASSWORD)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def with_credentials(url: str, userinfo: str = f"{USER}:{PASSWORD}") -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{userinfo}@{rest}"


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as running:
        yield running


# --- the requests authenticate -------------------------------------------------------


async def test_url_credentials_are_sent_as_basic_auth(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(with_credentials(server.url)) as client:
        await score(client)
    assert server.requests[0].headers["authorization"] == basic(USER, PASSWORD)


async def test_percent_encoded_credentials_are_sent_decoded(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(with_credentials(server.url, "svc%40corp:p%3Ass%2Fword")) as client:
        await score(client)
    assert server.requests[0].headers["authorization"] == basic("svc@corp", "p:ss/word")


async def test_the_tokenize_request_authenticates_too(server: LoopbackServer) -> None:
    ids = list(range(1000, 1000 + len(TEXTS)))
    server.script(CHAT, Reply(body=vllm_shapes.body(TEXTS, top_k=2, ids=ids)))
    server.script("/tokenize", Reply.json({"count": len(ids), "tokens": ids}))
    async with client_for(with_credentials(server.url)) as client:
        await score(client)
    assert server.received("/tokenize")[0].headers["authorization"] == basic(USER, PASSWORD)


async def test_url_credentials_take_the_place_of_the_api_key_on_their_endpoint(
    server: LoopbackServer,
) -> None:
    # One Authorization header per request: as httpx does for a URL's userinfo.
    server.script(CHAT, OK)
    async with client_for(with_credentials(server.url), api_key="sk-key") as client:
        await score(client)
    assert server.requests[0].headers["authorization"] == basic(USER, PASSWORD)


async def test_the_request_line_carries_no_credentials(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(with_credentials(server.url)) as client:
        await score(client)
    assert (server.requests[0].path, server.requests[0].headers["host"]) == (CHAT, server.host)


# --- and appear nowhere else ---------------------------------------------------------


async def test_the_result_names_the_endpoint_by_host_and_port(server: LoopbackServer) -> None:
    server.script(CHAT, OK)
    async with client_for(with_credentials(server.url)) as client:
        result = await score(client)
    assert result.endpoint == server.host


async def test_credentials_never_reach_metric_labels(server: LoopbackServer) -> None:
    server.script(CHAT, Reply.error(503, "down"), Reply.error(503, "down"), OK)
    async with client_for(
        with_credentials(server.url), breaker_failure_threshold=2, breaker_reset_seconds=0.01
    ) as client:
        await score(client)
    exposition = generate_latest(REGISTRY).decode()
    labelled = f'memscore_circuit_breaker_state{{dependency="vllm",endpoint="{server.host}"}}'
    assert (leaks(exposition), labelled in exposition) == ([], True)


async def test_credentials_never_reach_log_records(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script(CHAT, Reply.error(503, "down"), Reply(reset=True), OK)
    caplog.set_level(logging.DEBUG)
    async with client_for(with_credentials(server.url)) as client:
        await score(client)
    records = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    assert (len(records) >= 2, leaks("\n".join(records))) == (True, [])


FAILURES = {
    "503": Reply.error(503, "down"),
    "401": Reply.error(401, "bad key"),
    "404-model": Reply.json(
        {"error": {"message": "The model `m` does not exist.", "type": "NotFoundError"}},
        status=404,
    ),
    "404-path": Reply(status=404, body=b"not found"),
    "400": Reply.error(400, "bad request"),
    "400-context-length": Reply.error(
        400, "This model's maximum context length is 10 tokens. However, your request has 20"
    ),
    "reset": Reply(reset=True),
    "cut-mid-body": Reply(body=OK.body, cut_after=10),
}


@pytest.mark.parametrize("reply", FAILURES.values(), ids=FAILURES.keys())
async def test_credentials_never_reach_error_messages(server: LoopbackServer, reply: Reply) -> None:
    server.always(CHAT, reply)
    async with client_for(with_credentials(server.url), max_attempts=1) as client:
        with pytest.raises(MemscoreError) as info:
            await score(client)
    error = info.value
    text = f"{error} {error.message} {error!r} {getattr(error, 'endpoint', '')}"
    assert leaks(text) == []


async def test_credentials_never_reach_a_connection_error() -> None:
    url = closed_port_url()
    async with client_for(with_credentials(url), max_attempts=1) as client:
        with pytest.raises(InferenceUnavailable) as info:
            await score(client)
    assert (leaks(f"{info.value} {info.value!r}"), info.value.endpoint) == (
        [],
        url.removeprefix("http://"),
    )


# --- names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urls", "names", "base_urls"),
    [
        (["http://u:p@vllm:8000/"], ["vllm:8000"], ["http://vllm:8000"]),
        (["https://vllm/v1-prefix"], ["vllm:443"], ["https://vllm/v1-prefix"]),
        (["http://u@vllm"], ["vllm:80"], ["http://vllm"]),
        (["http://[::1]:8000"], ["[::1]:8000"], ["http://[::1]:8000"]),
        (
            ["http://a:x@gw:80/one", "http://b:y@gw/two"],
            ["gw:80", "gw:80#2"],
            ["http://gw/one", "http://gw/two"],
        ),
    ],
)
def test_endpoints_are_named_by_host_and_port(
    urls: list[str], names: list[str], base_urls: list[str]
) -> None:
    pool = endpoints(urls, failure_threshold=1, reset_seconds=1.0)
    assert ([e.name for e in pool], [e.base_url for e in pool]) == (names, base_urls)


@pytest.mark.parametrize(
    "url",
    [
        f"http://{USER}:{PASSWORD}@[bad",
        f"http://{USER}:{PASSWORD}@vllm:port",
        f"ftp://{USER}:{PASSWORD}@vllm",
        "http://",
    ],
)
def test_a_malformed_url_is_refused_by_position_without_echoing_it(url: str) -> None:
    with pytest.raises(ValueError, match=r"model server URL #2 is not a") as info:
        endpoints(["http://ok:1", url], failure_threshold=1, reset_seconds=1.0)
    assert leaks(str(info.value)) == []
