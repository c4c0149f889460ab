"""Helpers the benchmarks share: a time-stamped progress line, and dropping their namespaces."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def upsert_events(server, names: list[str], events: int, hotels: int, tag: str):
    """``image.upserted`` events: event i goes to hotel i % hotels (image i // hotels); the photos
    ``names`` on ``server`` are reused round-robin by URL."""
    from galleryrank.consumer.stream.events import ImageUpserted
    from galleryrank.consumer.stream.produce import now_iso

    now = now_iso()
    for i in range(events):
        yield ImageUpserted(
            f"{tag}-{i}", f"h-{i % hotels:05d}", f"img-{i // hotels}", server.url(names[(i * 7) % len(names)]), now
        )


async def drop_namespaces(redis_url: str, prefix: str) -> None:
    """UNLINK every key of the namespaces whose names start with `prefix` (a benchmark's own)."""
    import redis.asyncio as aioredis

    from galleryrank.consumer.state import keys

    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=keys.namespace_pattern(prefix + "*"), count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()
