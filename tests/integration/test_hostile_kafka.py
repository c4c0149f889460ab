"""Hostile records at the Kafka level, through the real scorer on the real Tansu broker.

* every compression codec Kafka has (gzip, snappy, lz4, zstd) is consumed;
* a record above the DLQ producer's max_request_size is dead-lettered truncated,
  with its size and SHA-256 in headers, and the partition moves on;
each followed by a good event that must still be applied.
"""

from __future__ import annotations

import hashlib

import orjson
import pytest

from galleryrank.consumer.state.keys import dlq_marker_pattern
from galleryrank.consumer.stream.dlq import TRUNCATED_VALUE_BYTES
from galleryrank.consumer.stream.events import encode_event
from galleryrank.consumer.stream.kafka import create_topics, make_producer
from galleryrank.consumer.stream.produce import upserted
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up

pytestmark = pytest.mark.integration


async def _cleanup(redis, s) -> None:
    await drop_namespace(redis, s.namespace)
    async for key in redis.scan_iter(match=dlq_marker_pattern(s.group_id), count=500):
        await redis.unlink(key)


async def _produce(settings, records, **producer_options) -> None:
    """Send (events or raw key/value) in order; with linger several land in one (compressed) batch."""
    producer = make_producer(settings, **producer_options)
    await producer.start()
    try:
        futures = []
        for record in records:
            key, value = record if isinstance(record, tuple) else encode_event(record)
            futures.append(await producer.send(settings.topic, key=key, value=value))
        for fut in futures:
            await fut
    finally:
        await producer.stop()


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
async def test_every_compression_codec_is_consumed(settings, model, redis, image_server, sample_jpegs, codec):
    name = sorted(sample_jpegs)[0]
    good = [upserted(f"hc-{codec}-{i}", f"img-{i}", image_server.url(name)) for i in range(3)]
    bad = (f"hc-{codec}-bad".encode(), b"{not json")
    await create_topics(settings, partitions=1)
    await _produce(settings, [*good[:2], bad, good[2]], compression_type=codec, linger_ms=50)
    try:
        summary = await run_until_caught_up(settings, model, redis, partitions=1)
        assert summary.events == 4 and summary.applied == 3, summary
        docs = await galleries(redis, settings.namespace, [f"hc-{codec}-{i}" for i in range(3)])
        assert len(docs) == 3, f"{codec}: every good event of the compressed batch is applied"
        (dead,) = await read_topic(settings, settings.dlq_topic, expected=1)
        assert headers(dead)["reason"] == "invalid_json" and dead.value == bad[1]
    finally:
        await _cleanup(redis, settings)


async def test_a_record_too_big_for_the_dlq_is_dead_lettered_truncated_and_the_partition_moves_on(
    settings, model, redis, image_server, sample_jpegs
):
    name = sorted(sample_jpegs)[0]
    huge = orjson.dumps({"event_id": "e-huge", "type": "image.upserted", "pad": "x" * 1_500_000})
    before = upserted("hk-before", "img-0", image_server.url(name))
    after = upserted("hk-after", "img-0", image_server.url(name))
    await create_topics(settings, partitions=1)
    # The producer of this test may send 4 MB; the scorer's DLQ producer keeps aiokafka's 1 MB default.
    await _produce(settings, [before, (b"hk-huge", huge), after], max_request_size=4 << 20)
    s = settings.model_copy(update={"stop_when_idle_s": 2.0})
    try:
        # Returns at all (pytest-timeout would fail it): the DLQ send is not retried forever.
        summary = await run_until_caught_up(s, model, redis, partitions=1)
        assert (summary.events, summary.applied, summary.dead_lettered) == (3, 2, 1)
        assert set(await galleries(redis, s.namespace, ["hk-before", "hk-after"])) == {"hk-before", "hk-after"}
        (dead,) = await read_topic(s, s.dlq_topic, expected=1)
        h = headers(dead)
        assert h["reason"] == "event_too_large" and h["source_offset"] == "1"
        assert h["dlq_form"] == "truncated"
        assert int(h["original_value_size"]) == len(huge)
        assert h["original_value_sha256"] == hashlib.sha256(huge).hexdigest()
        assert dead.value == huge[:TRUNCATED_VALUE_BYTES] and dead.key == b"hk-huge"
    finally:
        await _cleanup(redis, s)
