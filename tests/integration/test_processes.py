"""`galleryrank consume --processes 2`: two scorer processes in one group, one SIGKILLed and restarted.

Real Tansu, Redis and HTTP; the supervisor and its children are real OS
processes running the real CLI. Nothing may be lost: every event published
before and after the kill ends up in Redis, the bad one in the DLQ.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from galleryrank.consumer.dev.embedded import free_port
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.consumer.supervisor import topic_partitions
from tests.crash_harness import REPO_ROOT, settings_env
from tests.helpers import drop_namespace, headers, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOTELS = [f"proc-{h}" for h in range(8)]


def events(image_server, names: list[str], first: int, count: int) -> list:
    return [
        upserted(hid, f"img-{i}", image_server.url(names[(h + i) % len(names)]))
        for i in range(first, first + count)
        for h, hid in enumerate(HOTELS)
    ]


async def get_json(url: str) -> tuple[int, dict]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http:
            async with http.get(url) as resp:
                return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def get_text(url: str) -> str:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        async with http.get(url) as resp:
            assert resp.status == 200, url
            return await resp.text()


async def wait_until(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_processes_one_killed_is_restarted_and_nothing_is_lost(
    settings, redis, image_server, sample_jpegs, tmp_path
):
    names = sorted(sample_jpegs)
    port = free_port()
    s = settings.model_copy(update={"metrics_port": port, "metrics_host": "127.0.0.1", "batch_size": 8})
    await create_topics(s, partitions=4)
    assert await topic_partitions(s) == 4  # what --processes 0 caps the host's fit by
    bad = (
        HOTELS[0].encode(),
        b'{"event_id": "bad-1", "type": "image.exploded", "hotel_id": "proc-0", "image_id": "img-x"}',
    )
    await publish(s, [*events(image_server, names, 0, 3), bad])

    log_path = tmp_path / "supervisor.log"
    log = open(log_path, "ab")
    sup = subprocess.Popen(
        [sys.executable, "-m", "galleryrank", "consume", "--processes", "2"],
        env=settings_env(s),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    store = GalleryStore(redis)
    try:

        async def ready():
            status, body = await get_json(f"{base}/readyz")
            return status == 200 and body.get("children") == [True, True]

        await wait_until(ready, 150, "both children to join the group")
        status, health = await get_json(f"{base}/healthz")
        assert status == 200
        children = health["children"]
        assert [c["metrics_port"] for c in children] == [port + 1, port + 2]
        victim = children[0]["pid"]
        survivor = children[1]["pid"]
        assert victim and survivor and victim != survivor

        os.kill(victim, signal.SIGKILL)  # no drain, no commit, no leave-group
        await publish(s, events(image_server, names, 3, 3))

        async def restarted():
            _, body = await get_json(f"{base}/healthz")
            kids = body.get("children") or [{}]
            c0 = kids[0]
            return c0.get("restarts", 0) >= 1 and c0.get("pid") not in (None, victim) and c0

        child0 = await wait_until(restarted, 90, "the killed child to be restarted")
        assert -signal.SIGKILL in child0["exit_codes"]

        async def all_durable():
            for hid in HOTELS:
                records = await store.hotel_records(s.namespace, hid)
                if set(records) != {f"img-{i}" for i in range(6)}:
                    return False
            return True

        await wait_until(all_durable, 150, "every event of both batches in Redis")
        # The restarted child is a working member again: the supervisor sees it ready.
        await wait_until(ready, 150, "the restarted child to be ready")
        assert alive(survivor)
        # Metrics: each child's scorer metrics on its own port, the supervisor's own on the base port.
        child_metrics = await get_text(f"http://127.0.0.1:{port + 2}/metrics")
        assert "galleryrank_events_total" in child_metrics
        sup_metrics = await get_text(f"{base}/metrics")
        restarts = re.search(r'^galleryrank_supervisor_restarts_total\{child="0"\} ([0-9.]+)$', sup_metrics, re.M)
        assert restarts and float(restarts.group(1)) >= 1
        assert "galleryrank_supervisor_children_alive 2.0" in sup_metrics

        dead = await read_topic(s, s.dlq_topic, expected=1)
        # Exactly once per source record, although a child was killed mid-stream.
        assert len({(headers(r)["source_partition"], headers(r)["source_offset"]) for r in dead}) == 1
        assert {headers(r)["reason"] for r in dead} == {"unknown_type"}

        # SIGTERM: every child stops (drained), the supervisor exits 0.
        pids = [c["pid"] for c in (await get_json(f"{base}/healthz"))[1]["children"]]
        sup.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(sup.wait, 90) == 0
        assert not any(alive(p) for p in pids if p)
        assert b"restarting in" in log_path.read_bytes()
    finally:
        if sup.poll() is None:
            os.killpg(sup.pid, signal.SIGKILL)
            sup.wait()
        log.close()
        await drop_namespace(redis, s.namespace)
