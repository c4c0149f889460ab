"""Hotel search of the read API at scale: the sorted-set index next to the old SET scan, in one run.

Fills two temporary namespaces on a real Redis with N hotel ids (default 200,000):
one with the sorted-set index the store writes now (consumer/state/hotel_index.py),
one with the plain SET older namespaces hold (read by SSCAN + sort, as before).
Then the real aiohttp app (consumer/api/serve.py) answers ``GET /hotels?q=..&limit=50``
over loopback: sequential latency, and 50 concurrent searches. Prints one table;
the namespaces are deleted afterwards.

    python bench/search_bench.py [--hotels 200000] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import time

import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import hotel_index, keys


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def fill(redis, ns_new: str, ns_old: str, ids: list[str]) -> None:
    for i in range(0, len(ids), 5000):
        chunk = ids[i : i + 5000]
        pipe = redis.pipeline(transaction=False)
        hotel_index.add(pipe, ns_new, chunk)
        pipe.sadd(keys.hotels_key(ns_old), *chunk)
        await pipe.execute()


async def measure(client: TestClient, ns: str, prefixes: list[str], concurrent: int) -> dict:
    latencies = []
    for p in prefixes:
        started = time.perf_counter()
        resp = await client.get("/hotels", params={"q": p, "limit": "50", "namespace": ns})
        body = await resp.json()
        latencies.append(time.perf_counter() - started)
        assert resp.status == 200 and body["hotels"], body
    rss_before = rss_mb()
    cpu_before = time.process_time()
    started = time.perf_counter()
    await asyncio.gather(
        *(client.get("/hotels", params={"q": random.choice(prefixes), "namespace": ns}) for _ in range(concurrent))
    )
    return {
        "p50_ms": statistics.median(latencies) * 1000,
        "max_ms": max(latencies) * 1000,
        "concurrent_s": time.perf_counter() - started,
        "concurrent_cpu_s": time.process_time() - cpu_before,
        "rss_growth_mb": rss_mb() - rss_before,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hotels", type=int, default=200_000)
    ap.add_argument("--searches", type=int, default=20, help="sequential searches per index")
    ap.add_argument("--concurrent", type=int, default=50)
    ap.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = ap.parse_args()
    tag = f"bench-search-{os.getpid()}"
    ns_new, ns_old = f"{tag}-zset", f"{tag}-set"
    redis = aioredis.Redis.from_url(args.redis_url)
    rng = random.Random(1)
    ids = [f"hotel-{rng.randrange(10**9):09d}-{i}" for i in range(args.hotels)]
    prefixes = [f"hotel-{rng.randrange(10**9):09d}"[:9] for _ in range(args.searches)]
    try:
        await fill(redis, ns_new, ns_old, ids)
        app = create_app(Settings(redis_url=args.redis_url), redis=redis)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            rows = {
                "sorted set, ZRANGEBYLEX (now); narrow prefix": await measure(
                    client, ns_new, prefixes, args.concurrent
                ),
                "SET, SSCAN + sort (before); narrow prefix": await measure(client, ns_old, prefixes, args.concurrent),
                # "hotel-" matches every id: the old path moved and sorted all 200 k per request.
                "sorted set (now); prefix matching all": await measure(client, ns_new, ["hotel-"] * 3, args.concurrent),
                "SET (before); prefix matching all": await measure(client, ns_old, ["hotel-"] * 3, args.concurrent),
            }
    finally:
        await redis.unlink(keys.hotels_key(ns_new), keys.hotels_key(ns_old))
        await redis.aclose()
    load = os.getloadavg()
    print(f"hotels {args.hotels:,}; limit 50; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| index | search p50 ms | search max ms | 50 concurrent: wall s | CPU s (API process) | RSS growth MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(
            f"| {name} | {r['p50_ms']:.1f} | {r['max_ms']:.1f} | {r['concurrent_s']:.2f} | "
            f"{r['concurrent_cpu_s']:.2f} | {r['rss_growth_mb']:.0f} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
