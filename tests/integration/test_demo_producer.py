"""`galleryrank demo-producer` (compose's demo profile) against a real broker."""

from __future__ import annotations

import asyncio
import sys

import orjson
import pytest

from galleryrank.consumer.dev.embedded import free_port
from galleryrank.consumer.stream.kafka import create_topics
from tests.crash_harness import REPO_ROOT, settings_env
from tests.helpers import read_topic

pytestmark = pytest.mark.integration


async def test_demo_producer_publishes_events_pointing_at_its_own_server(settings):
    await create_topics(settings, partitions=1)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "galleryrank",
        "demo-producer",
        "--hotels",
        "3",
        "--per-hotel",
        "2",
        "--listen-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--serve-seconds",
        "20",
        env=settings_env(settings),
        cwd=REPO_ROOT,
    )
    try:
        records = await read_topic(settings, settings.topic, expected=6, timeout_s=30)
        assert len(records) == 6
        events = [orjson.loads(r.value) for r in records]
        assert {e["hotel_id"] for e in events} == {"h-1000", "h-1001", "h-1002"}
        assert all(r.key == e["hotel_id"].encode() for r, e in zip(records, events))
        # The URLs it published are served by it.
        import aiohttp

        async with aiohttp.ClientSession() as http:
            async with http.get(events[0]["url"]) as resp:
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                assert len(await resp.read()) > 1000
    finally:
        proc.terminate()
        await proc.wait()
