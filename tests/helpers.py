"""Helpers for integration tests: run the scorer, read galleries and the DLQ."""

from __future__ import annotations

import time

import orjson

from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.kafka import create_topics, make_consumer


async def run_until_caught_up(settings: Settings, model, redis, **kwargs):
    await create_topics(settings, partitions=kwargs.pop("partitions", 2))
    return await run_scorer(settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False, **kwargs)


def input_partitions(settings: Settings, assigned) -> int:
    """How many of `assigned` are the input topic's (a scorer is also assigned the backfill and labels topics')."""
    return sum(tp.topic == settings.topic for tp in assigned)


async def galleries(redis, namespace: str, hotel_ids) -> dict[str, dict]:
    out = {}
    for hid in hotel_ids:
        raw = await redis.get(keys.gallery_key(namespace, hid))
        if raw is not None:
            out[hid] = orjson.loads(raw)
    return out


def without_timestamps(docs: dict[str, dict]) -> dict[str, dict]:
    return {h: {k: v for k, v in d.items() if k != "updated_at"} for h, d in docs.items()}


async def read_topic(settings: Settings, topic: str, expected: int, timeout_s: float = 15.0) -> list:
    consumer = make_consumer(settings, group_id=f"reader-{time.time_ns()}")
    consumer.subscribe([topic])
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expected and not batch:
                break
    finally:
        await consumer.stop()
    return records


def headers(record) -> dict[str, str]:
    return {k: v.decode() for k, v in (record.headers or ())}


async def drop_namespace(redis, namespace: str) -> None:
    async for key in redis.scan_iter(match=keys.namespace_pattern(namespace), count=500):
        await redis.unlink(key)
