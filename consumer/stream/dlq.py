"""The dead-letter topic: the original record plus why it could not be applied.

Headers (all UTF-8): `reason` (a stable code, also the metric label), `error`
(a readable sentence, never secrets), `source_topic`, `source_partition`,
`source_offset`, `event_id` (when parsed), `failed_at` (ISO 8601 UTC).
The send is awaited with acks=all before the source offset may be committed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer

from .. import metrics

log = logging.getLogger(__name__)


def dlq_headers(
    reason: str, detail: str, topic: str, partition: int, offset: int, event_id: str | None
) -> list[tuple[str, bytes]]:
    headers = [
        ("reason", reason),
        ("error", detail[:1000]),
        ("source_topic", topic),
        ("source_partition", str(partition)),
        ("source_offset", str(offset)),
        ("failed_at", datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")),
    ]
    if event_id:
        headers.append(("event_id", event_id))
    return [(k, v.encode("utf-8", "replace")) for k, v in headers]


class DeadLetters:
    def __init__(self, producer: AIOKafkaProducer, topic: str):
        self.producer = producer
        self.topic = topic

    async def send(
        self,
        key: bytes | None,
        value: bytes | None,
        *,
        reason: str,
        detail: str,
        topic: str,
        partition: int,
        offset: int,
        event_id: str | None = None,
    ) -> None:
        log.warning(
            "dead-letter %s[%d]@%d reason=%s: %s",
            topic,
            partition,
            offset,
            reason,
            detail,
            extra={"reason": reason, "event_id": event_id},
        )
        await self.producer.send_and_wait(
            self.topic, value=value, key=key, headers=dlq_headers(reason, detail, topic, partition, offset, event_id)
        )
        metrics.DLQ.labels(reason=reason).inc()
        metrics.EVENTS.labels(outcome="dlq").inc()
