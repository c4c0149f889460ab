"""Redis refusing writes, for real, mid-stream (issue 20; the error model of docs/architecture.md).

A private redis-server (tests/private_redis.py) is made to refuse writes four ways:
``maxmemory`` with ``noeviction`` (OOM, also inside the apply script), ``REPLICAOF`` a master
that does not exist (READONLY) and back, ``CLIENT PAUSE WRITE`` (writes block), and a
long-running script (BUSY). In each: nothing is dead-lettered, no offset moves past what was
written, the consumer does not busy-loop while it waits (CPU from /proc), and every good
event is applied once the fault ends.
"""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pytest
import redis.asyncio as aioredis

from galleryrank.consumer import metrics
from galleryrank.consumer.dev.embedded import free_port
from galleryrank.consumer.runtime import build_scorer, caught_up
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import deleted, hidden, publish, upserted
from galleryrank.consumer.stream.scorer import Hooks
from tests.integration.test_faults import committed_positions, until
from tests.private_redis import PrivateRedis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.onnx_model]

HOTELS = [f"w-{h}" for h in range(4)]
# Long enough to last the whole observation window; the script ends by itself.
BUSY_SCRIPT = """
local start = tonumber(redis.call('TIME')[1])
while tonumber(redis.call('TIME')[1]) - start < tonumber(ARGV[1]) do end
return 1
"""


def cpu_s() -> float:
    """User + system CPU seconds of this process (the scorer runs in it) from /proc."""
    fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Fault:
    """Start and end one way of refusing writes on `admin`'s server."""

    def __init__(self, kind: str, admin: aioredis.Redis, url: str):
        self.kind, self.admin, self.url = kind, admin, url
        self._busy: asyncio.Task | None = None
        self._busy_client: aioredis.Redis | None = None

    async def start(self) -> None:
        if self.kind == "oom":
            await self.admin.config_set("maxmemory-policy", "noeviction")
            await self.admin.config_set("maxmemory", "1")
        elif self.kind == "readonly":
            await self.admin.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # nobody there
        elif self.kind == "pause_write":
            await self.admin.execute_command("CLIENT", "PAUSE", "600000", "WRITE")
        elif self.kind == "busy":
            await self.admin.config_set("lua-time-limit", "100")  # BUSY replies after 100 ms
            self._busy_client = aioredis.Redis.from_url(self.url, socket_timeout=60)
            self._busy = asyncio.create_task(self._busy_client.eval(BUSY_SCRIPT, 0, "15"))
            await asyncio.sleep(0.3)

    def busy_wait(self) -> bool:
        return self.kind == "busy"

    async def end(self) -> None:
        if self.kind == "oom":
            await self.admin.config_set("maxmemory", "0")
        elif self.kind == "readonly":
            await self.admin.execute_command("REPLICAOF", "NO", "ONE")
        elif self.kind == "pause_write":
            await self.admin.execute_command("CLIENT", "UNPAUSE")
        elif self.kind == "busy" and self._busy is not None:
            await self._busy  # the script ends by itself (SCRIPT KILL would need the server free)
            await self._busy_client.aclose()


@pytest.mark.parametrize("kind", ["oom", "readonly", "pause_write", "busy"])
async def test_redis_refusing_writes_dead_letters_nothing_commits_nothing_and_applies_everything_after(
    kind, settings, model, small_server
):
    server = PrivateRedis().start()
    client = aioredis.Redis.from_url(server.url)
    admin = aioredis.Redis.from_url(server.url)
    s = settings.model_copy(update={"redis_url": server.url, "max_in_flight": 16})
    urls = [small_server.url(n) for n in sorted(small_server.images)]
    await create_topics(s, partitions=1)
    before = [upserted(h, f"img-{i}", urls[i]) for h in HOTELS for i in range(2)]
    during = [upserted(h, f"img-{i}", urls[i % len(urls)]) for h in HOTELS for i in range(2, 7)]
    during += [deleted(h, "img-0") for h in HOTELS] + [hidden(h, "img-1") for h in HOTELS]
    await publish(s, before)

    async def all_done(sc) -> bool:
        return sc.summary.events >= len(before) + len(during) and await caught_up(sc)

    scorer = build_scorer(s, model, client, control=Hooks(stop_at=all_done))
    run = asyncio.create_task(scorer.run())
    fault = Fault(kind, admin, server.url)
    try:

        async def committed() -> int:
            return (await committed_positions(s, 1))[0]

        async def before_done() -> bool:
            return await committed() >= len(before)

        assert await until(before_done, 90, every_s=0.3), "the events before the fault were not committed"
        await fault.start()
        retries_before = metrics.REDIS_RETRIES._value.get()
        await publish(s, during)

        async def blocked() -> bool:
            return bool(scorer.progress().paused) and (
                kind == "pause_write" or metrics.REDIS_RETRIES._value.get() > retries_before
            )

        assert await until(blocked, 60, every_s=0.2), (
            f"the consumer neither paused nor retried: done={run.done()} progress={scorer.progress()}"
            + (f" error={run.exception()!r}" if run.done() else "")
        )
        await asyncio.sleep(1.0)  # the last fetched records reach the writer
        cpu0, wall0 = cpu_s(), time.monotonic()
        await asyncio.sleep(3.0)
        cores = (cpu_s() - cpu0) / (time.monotonic() - wall0)
        assert not run.done(), "the consumer must wait the fault out, not stop"
        assert scorer.progress().summary.dead_lettered == 0, "a refused write is never the event's fault"
        if fault.busy_wait():
            await fault.end()  # the probe below needs Kafka only, but keep the order of the others
        in_fault = await committed()
        assert in_fault == len(before), f"committed {in_fault} while nothing after {len(before)} was written"
        assert cores < 0.2, f"busy loop while Redis refused writes: {cores:.2f} cores"
        await fault.end()
        await asyncio.wait_for(run, 120)
        assert scorer.progress().summary.dead_lettered == 0
        assert await committed() == len(before) + len(during)
        for h in HOTELS:
            doc = orjson.loads(await client.get(keys.gallery_key(s.namespace, h)))
            assert sorted(i["image_id"] for i in doc["images"]) == [f"img-{i}" for i in range(2, 7)], h
            assert await client.hlen(keys.images_key(s.namespace, h)) == 7
        print(
            f"{kind}: {cores:.3f} cores while blocked, {metrics.REDIS_RETRIES._value.get() - retries_before:g} retries"
        )
    finally:
        if not run.done():
            scorer.stop()
            run.cancel()
        await client.aclose()
        await admin.aclose()
        server.close()
