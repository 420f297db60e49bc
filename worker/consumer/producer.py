"""The narrow protocols the consumer uses of aiokafka's records and producer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Record(Protocol):
    """The parts of aiokafka's ConsumerRecord that are used."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Producer(Protocol):
    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> Any: ...
