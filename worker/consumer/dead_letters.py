"""Parking a record on the DLQ, with Kafka's errors translated at this boundary."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from worker.consumer.messages import dlq_headers
from worker.consumer.producer import Producer, Record
from worker.errors import DependencyUnavailable, MemscoreError

log = logging.getLogger(__name__)

#: On a DLQ record parked without its value (too large to send): the value's size in bytes.
VALUE_DROPPED_HEADER = "memscore.value_dropped_bytes"


@dataclass
class DeadLetterQueue:
    producer: Producer
    topic: str

    async def park(self, record: Record, error: MemscoreError) -> None:
        """Send ``record`` to the DLQ with why and where it failed.

        Raises DependencyUnavailable("kafka") when the broker cannot take it now.
        """
        headers = dlq_headers(
            record.headers,
            error,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
        )
        try:
            try:
                await self.producer.send_and_wait(
                    self.topic,
                    # aiokafka refuses a record with neither key nor value (other clients
                    # produce such tombstones): park that one with an empty value.
                    value=b"" if record.value is None and record.key is None else record.value,
                    key=record.key,
                    headers=headers,
                )
            except MessageSizeTooLargeError:
                # Too big for any request to the DLQ: retrying cannot help, and retrying
                # forever would stall the partition for good. Park it without its value.
                dropped = (VALUE_DROPPED_HEADER, str(len(record.value or b"")).encode())
                await self.producer.send_and_wait(
                    self.topic, value=b"", key=record.key, headers=[*headers, dropped]
                )
        except KafkaError as exc:
            raise DependencyUnavailable(
                f"DLQ produce failed: {type(exc).__name__}", "kafka"
            ) from None
