"""Helpers the benchmarks share: a time-stamped progress line, and dropping their namespaces."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    """A progress line on stderr (stdout carries the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
