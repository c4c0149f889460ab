"""The dead-letter topic: the original record plus why it could not be applied.

Headers (all UTF-8): `reason` (a stable code, also the metric label), `error`
(a readable sentence, never secrets), `source_topic`, `source_partition`,
`source_offset`, `event_id` (when parsed), `failed_at` (ISO 8601 UTC).
The send is awaited with acks=all before the source offset may be committed.

Every record can be dead-lettered, so no partition can wedge on one. Forms,
tried in order until the broker takes one:

1. ``original``: key and value exactly as they came;
2. ``truncated``: when the broker or the producer refuses the record itself
   (bigger than ``max_request_size`` / the broker's ``message.max.bytes``, or any
   other non-retriable error): the value cut to ``TRUNCATED_VALUE_BYTES`` and
   the key to ``TRUNCATED_KEY_BYTES``, with headers ``dlq_form=truncated``,
   ``original_value_size``, ``original_value_sha256`` (and the same for the key);
3. ``headers_only``: no key, no value, those headers only.

Errors of the broker (not of the record: connection lost, leader moved,
timeouts) are retried with capped exponential backoff, for at most
``retry_budget_s`` per form; past that the send raises :class:`DeadLetterFailed`,
which stops the service (the source offset stays uncommitted, so the record
is redone after the restart, never lost). Nothing is retried forever.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from .. import metrics
from ..failures import Backoff, RetryBudgetExceeded, is_environment, retry
from ..settings import ServiceStopped

log = logging.getLogger(__name__)

TRUNCATED_VALUE_BYTES = 64 * 1024  # the event schema's own cap: a valid event always fits whole
TRUNCATED_KEY_BYTES = 1024
RETRY_BUDGET_S = 120.0
_BACKOFF_START_S, _BACKOFF_MAX_S = 0.1, 5.0


class DeadLetterFailed(ServiceStopped):
    """The DLQ refused every form of a record, or the broker stayed unreachable past the budget."""


def _digest_headers(name: str, data: bytes | None) -> list[tuple[str, str]]:
    if data is None:
        return []
    return [(f"original_{name}_size", str(len(data))), (f"original_{name}_sha256", hashlib.sha256(data).hexdigest())]


def record_forms(key: bytes | None, value: bytes | None) -> list[tuple[str, bytes | None, bytes | None, list]]:
    """(form, key, value, extra headers) in the order they are tried."""
    digests = _digest_headers("value", value) + _digest_headers("key", key)
    return [
        ("original", key, value, []),
        (
            "truncated",
            key[:TRUNCATED_KEY_BYTES] if key is not None else None,
            value[:TRUNCATED_VALUE_BYTES] if value is not None else None,
            [("dlq_form", "truncated"), *digests],
        ),
        ("headers_only", None, None, [("dlq_form", "headers_only"), *digests]),
    ]


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
    def __init__(self, producer: AIOKafkaProducer, topic: str, retry_budget_s: float = RETRY_BUDGET_S):
        self.producer = producer
        self.topic = topic
        self.retry_budget_s = retry_budget_s

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
    ) -> str:
        """Dead-letter one record; returns the form the broker took. Raises DeadLetterFailed."""
        log.warning(
            "dead-letter %s[%d]@%d reason=%s: %s",
            topic,
            partition,
            offset,
            reason,
            detail,
            extra={"reason": reason, "event_id": event_id},
        )
        headers = dlq_headers(reason, detail, topic, partition, offset, event_id)
        refused: list[str] = []
        for form, k, v, extra in record_forms(key, value):
            try:
                await self._send_retrying(k, v, headers + [(n, x.encode()) for n, x in extra])
            except DeadLetterFailed:
                raise
            except (KafkaError, ValueError, TypeError) as exc:  # the record itself is refused: a smaller form
                refused.append(f"{form}: {type(exc).__name__}")
                log.warning("DLQ refused the %s form of %s[%d]@%d (%s)", form, topic, partition, offset, exc)
                continue
            if form != "original":
                metrics.DLQ_DEGRADED.labels(form=form).inc()
            metrics.DLQ.labels(reason=reason).inc()
            metrics.EVENTS.labels(outcome="dlq").inc()
            return form
        raise DeadLetterFailed(f"the DLQ refused every form of {topic}[{partition}]@{offset}: {'; '.join(refused)}")

    async def _send_retrying(self, key: bytes | None, value: bytes | None, headers: list) -> None:
        """Broker trouble (the error model's environment: consumer/failures.py) is retried for
        ``retry_budget_s``; an error of the record itself is raised at once (a smaller form)."""

        async def send() -> None:
            await self.producer.send_and_wait(self.topic, value=value, key=key, headers=headers)

        def on_retry(exc: BaseException, delay: float, tries: int) -> None:
            metrics.DLQ_SEND_RETRIES.inc()
            log.warning("DLQ send failed (%s); retrying in %.1fs", exc, delay)

        try:
            await retry(
                send,
                "DLQ send",
                retry_if=lambda exc: isinstance(exc, KafkaError) and is_environment(exc),
                backoff=Backoff(_BACKOFF_START_S, _BACKOFF_MAX_S, jitter=False),
                budget_s=self.retry_budget_s,
                on_retry=on_retry,
            )
        except RetryBudgetExceeded as exc:
            raise DeadLetterFailed(
                f"DLQ topic {self.topic} unreachable for {self.retry_budget_s:g} s ({type(exc.last).__name__})"
            ) from exc
