"""At most one dead-letter record per source record and consumer group (best effort).

Kafka without transactions (Tansu has none, docs/architecture.md) makes "send to the DLQ"
and "commit the source offset" two separate steps: a crash between them makes
the next owner of the partition redo the record and dead-letter it again.

So the scorer writes a small Redis marker right after the DLQ send is acked
(acks=all) and checks it before sending. That narrows the duplicate window to
the few milliseconds between the ack and the marker write; docs/reliability.md
gives the measured duplicate count under repeated SIGKILLs. Whatever slips
through carries the same idempotency key in its headers (`source_topic`,
`source_partition`, `source_offset`), so DLQ readers can drop it exactly.

Markers are per consumer group: a replay group (blue/green rescoring) writes
its own DLQ records. Redis trouble never blocks the DLQ: both operations fail
open (send anyway: at-least-once, never lost) within a short timeout.
"""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from ..interfaces import RedisClient
from ..state.keys import dlq_marker_key

log = logging.getLogger(__name__)

# Kafka's default retention is 7 days: a redo can only happen while the source
# record still exists, so a marker need not outlive it.
MARKER_TTL_S = 7 * 24 * 3600
# A marker lookup must never hold the DLQ up for long; on timeout we send (fail open).
MARKER_TIMEOUT_S = 2.0


class DlqMarks:
    """Redis markers "this source record is already in the DLQ" for one consumer group."""

    def __init__(
        self, redis: RedisClient, group_id: str, ttl_s: int = MARKER_TTL_S, timeout_s: float = MARKER_TIMEOUT_S
    ):
        self.redis = redis
        self.group_id = group_id
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s

    async def already_sent(self, topic: str, partition: int, offset: int) -> bool:
        try:
            async with asyncio.timeout(self.timeout_s):
                return bool(await self.redis.exists(dlq_marker_key(self.group_id, topic, partition, offset)))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("DLQ marker lookup failed (%s); sending anyway (at-least-once)", type(exc).__name__)
            return False

    async def mark_sent(self, topic: str, partition: int, offset: int) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.redis.set(dlq_marker_key(self.group_id, topic, partition, offset), b"1", ex=self.ttl_s)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("DLQ marker write failed (%s); a redo may dead-letter this record twice", type(exc).__name__)
