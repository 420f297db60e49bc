"""Building aiokafka clients from the settings (security included)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from worker.settings import Settings


def _common(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "client_id": f"memscore-{settings.group_id}",
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None
        )
    if settings.security_protocol.startswith("SASL"):
        assert settings.sasl_password is not None  # checked by Settings
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def build_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
        max_poll_interval_ms=int(settings.max_poll_interval_seconds * 1000),
        session_timeout_ms=int(settings.kafka_session_timeout_seconds * 1000),
        heartbeat_interval_ms=int(settings.kafka_heartbeat_interval_seconds * 1000),
        # One event can be up to MAX_EVENT_BYTES; let the broker hand it over whole.
        max_partition_fetch_bytes=max(1024 * 1024, settings.max_event_bytes + 64 * 1024),
        fetch_max_bytes=max(52_428_800, settings.max_event_bytes * 4),
        **_common(settings),
    )


def build_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=settings.kafka_producer_idempotence,
        max_request_size=max(1024 * 1024, settings.max_event_bytes + 64 * 1024),
        **_common(settings),
    )
