"""aiokafka clients built from Settings (security options in one place)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from ..settings import Settings
from .priority import subscribed_topics


def common_kwargs(settings: Settings) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        kw["ssl_context"] = create_ssl_context(cafile=settings.ssl_cafile)
    if settings.security_protocol.startswith("SASL"):
        kw["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        kw["sasl_plain_username"] = settings.sasl_username
        kw["sasl_plain_password"] = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    return kw


def make_producer(settings: Settings, **extra: Any) -> AIOKafkaProducer:
    # acks=all: a DLQ record is durable before the source offset is committed.
    # No idempotent producer: Tansu answers InitProducerId with UnknownError.
    return AIOKafkaProducer(acks="all", enable_idempotence=False, **common_kwargs(settings), **extra)


def make_consumer(settings: Settings, group_id: str | None, **extra: Any) -> AIOKafkaConsumer:
    """A consumer of `group_id` (None: no group, for assign() and reads without commits)."""
    return AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.session_timeout_ms,
        max_poll_interval_ms=settings.max_poll_interval_ms,
        **common_kwargs(settings),
        **extra,
    )


async def create_topics(settings: Settings, partitions: int, replication: int = 1) -> list[str]:
    """Create every subscribed topic (stream/priority.py: live, labels, backfill) and the DLQ if missing;
    returns the names created."""
    admin = AIOKafkaAdminClient(**common_kwargs(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in (*subscribed_topics(settings), settings.dlq_topic) if t not in existing]
        if wanted:
            await admin.create_topics(
                [NewTopic(name=t, num_partitions=partitions, replication_factor=replication) for t in wanted]
            )
        return wanted
    finally:
        await admin.close()
