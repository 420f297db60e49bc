"""Publishing memory-scored result events, with Kafka's errors translated at this boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiokafka.errors import KafkaError

from worker.consumer.messages import result_event
from worker.consumer.producer import Producer
from worker.errors import DependencyUnavailable
from worker.observability import metrics
from worker.scoring import ConversationScore


@dataclass
class ResultPublisher:
    producer: Producer
    topic: str

    async def publish(
        self, result: ConversationScore, *, scored_at: datetime | None = None
    ) -> None:
        """Send the result event, keyed by conversation.

        Raises DependencyUnavailable("kafka") when the broker cannot take it now.
        """
        try:
            await self.producer.send_and_wait(
                self.topic,
                value=result_event(result, now=scored_at),
                key=result.conversation_id.encode(),
            )
        except KafkaError as exc:
            metrics.PUBLISH_FAILURES.inc()
            raise DependencyUnavailable(
                f"publishing failed: {type(exc).__name__}", "kafka"
            ) from None
