"""The DLQ's degrade-and-bound logic (consumer/stream/dlq.py), with a producer that fails on purpose.

Pure logic: which form is tried after which error, and that nothing is retried
forever. The real-broker path (a 1.5 MB record through Tansu and the scorer) is
tests/integration/test_hostile_kafka.py.
"""

from __future__ import annotations

import hashlib
import time

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from galleryrank.consumer.stream.dlq import (
    TRUNCATED_KEY_BYTES,
    TRUNCATED_VALUE_BYTES,
    DeadLetterFailed,
    DeadLetters,
)


class RefusingProducer:
    """Refuses records whose value is larger than `max_value` (None: refuses every value), or fails always."""

    def __init__(self, max_value: int | None = None, down: bool = False) -> None:
        self.max_value = max_value
        self.down = down
        self.sent: list[tuple] = []
        self.calls = 0

    async def send_and_wait(self, topic, value=None, key=None, headers=None):
        self.calls += 1
        if self.down:
            raise KafkaConnectionError("broker unreachable")
        if value is not None and (self.max_value is None or len(value) > self.max_value):
            raise MessageSizeTooLargeError("too big")
        self.sent.append((key, value, dict(headers)))


def _send(dlq: DeadLetters, key: bytes | None, value: bytes | None):
    return dlq.send(key, value, reason="event_too_large", detail="big", topic="t", partition=0, offset=7)


async def test_a_record_the_broker_refuses_goes_truncated_with_size_and_sha256():
    value, key = b"v" * 2_000_000, b"k" * 5_000
    producer = RefusingProducer(max_value=TRUNCATED_VALUE_BYTES)
    assert await _send(DeadLetters(producer, "dlq"), key, value) == "truncated"
    ((sent_key, sent_value, headers),) = producer.sent
    assert sent_value == value[:TRUNCATED_VALUE_BYTES] and sent_key == key[:TRUNCATED_KEY_BYTES]
    assert headers["dlq_form"] == b"truncated" and headers["reason"] == b"event_too_large"
    assert headers["original_value_size"] == b"2000000"
    assert headers["original_value_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["original_key_sha256"] == hashlib.sha256(key).hexdigest().encode()


async def test_when_even_the_truncated_value_is_refused_the_headers_go_alone():
    producer = RefusingProducer(max_value=None)  # any value at all is refused
    assert await _send(DeadLetters(producer, "dlq"), b"k", b"v" * 100) == "headers_only"
    ((sent_key, sent_value, headers),) = producer.sent
    assert (sent_key, sent_value) == (None, None) and headers["dlq_form"] == b"headers_only"
    assert headers["source_offset"] == b"7"


async def test_a_broker_that_stays_down_is_retried_for_the_budget_only():
    producer = RefusingProducer(down=True)
    started = time.monotonic()
    with pytest.raises(DeadLetterFailed, match="unreachable for 1 s"):
        await _send(DeadLetters(producer, "dlq", retry_budget_s=1.0), b"k", b"v")
    assert time.monotonic() - started < 3
    assert producer.calls >= 3, "retried with backoff meanwhile"
