"""One model server of the pool: where requests go, how they authenticate, what it is called.

A base URL may carry credentials (``http://user:pass@vllm:8000``) for a proxy in front of
the server. They are taken out of the URL once, here, and sent as HTTP basic auth; the
endpoint's name — the only thing metrics labels, log lines and error messages ever
show — is its host and port.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from worker.inference.breaker import CircuitBreaker


@dataclass
class Endpoint:
    #: The base URL without credentials (and without a trailing slash).
    base_url: str
    #: ``host:port`` (the scheme's port when the URL names none): safe to show anywhere.
    name: str
    breaker: CircuitBreaker
    #: HTTP basic auth from the URL's userinfo; a no-op when it had none.
    auth: httpx.Auth = field(default_factory=httpx.Auth, repr=False)
    inflight: int = 0
    served: int = 0


_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_name(url: httpx.URL) -> str:
    """``host:port`` of a URL: never its userinfo, path or query."""
    host = f"[{url.host}]" if ":" in url.host else url.host  # IPv6 literal
    return f"{host}:{url.port or _DEFAULT_PORTS.get(url.scheme, 0)}"


def endpoints(
    base_urls: Sequence[str], failure_threshold: int, reset_seconds: float
) -> list[Endpoint]:
    """The pool's endpoints, each with its own breaker, named uniquely.

    Two URLs on the same host and port (paths of one gateway) would share a metric
    series and a name in logs; the later ones are told apart by their position.
    """
    pool: list[Endpoint] = []
    seen: set[str] = set()
    for position, raw in enumerate(base_urls, start=1):
        try:
            urlsplit(raw).port  # noqa: B018 - refuses what httpx lets through: "[bad", ":x"
            url = httpx.URL(raw.rstrip("/"))
        except (ValueError, httpx.InvalidURL):
            # Their messages may quote the URL, credentials and all.
            raise ValueError(f"model server URL #{position} is not a valid URL") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"model server URL #{position} is not an http(s) URL")
        name = endpoint_name(url)
        if name in seen:
            name = f"{name}#{position}"
        seen.add(name)
        auth = httpx.BasicAuth(url.username, url.password) if url.userinfo else httpx.Auth()
        pool.append(
            Endpoint(
                base_url=str(url.copy_with(userinfo=b"")).rstrip("/"),
                name=name,
                breaker=CircuitBreaker(failure_threshold, reset_seconds),
                auth=auth,
            )
        )
    return pool
