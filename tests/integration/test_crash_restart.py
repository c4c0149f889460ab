"""SIGKILL the scorer mid-stream, restart it, and compare with an uninterrupted run."""

from __future__ import annotations

import asyncio
import random

import pytest

from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import deleted, publish, upserted
from tests.crash_harness import ConsumerProcess, kill_schedule
from tests.fault_support import wait_for_log
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up, without_timestamps

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def crash_events(image_server, names, hotels: int, per_hotel: int, seed: int = 11):
    rng = random.Random(seed)
    events, bad = [], 0
    for i in range(per_hotel):
        for h in range(hotels):
            hid = f"crash-{h}"
            events.append(upserted(hid, f"img-{i}", image_server.url(rng.choice(names))))
            if i == 2 and h % 4 == 0:
                events.append(deleted(hid, "img-1"))
            if i == 3 and h % 5 == 0:  # a bad event among the good ones
                events.append((hid.encode(), b'{"event_id": "bad", "type": "image.exploded"}'))
                bad += 1
    return events, bad


async def test_sigkill_mid_stream_loses_nothing_and_applies_nothing_twice(
    settings, model, redis, image_server, sample_jpegs, tmp_path
):
    hotels = [f"crash-{h}" for h in range(12)]
    events, bad = crash_events(image_server, sorted(sample_jpegs), hotels=12, per_hotel=8)
    await create_topics(settings, partitions=3)
    await publish(settings, events)
    reference_ns, crash_ns = settings.namespace + "-ref", settings.namespace + "-crash"
    crash_settings = settings.model_copy(
        update={"namespace": crash_ns, "group_id": settings.group_id + "-crash", "batch_size": 8}
    )
    proc = ConsumerProcess(crash_settings, tmp_path / "consumer.log")
    try:
        # Crash run: start, wait until it owns partitions (start-up costs ~5 s of imports
        # and model + the dead member's 6 s session + a ~3 s join, and varies with load),
        # let it work for a seeded random while, SIGKILL; three times.
        log = tmp_path / "consumer.log"
        for run_s in kill_schedule(seed=3, kills=3, low_s=1.0, high_s=5.0):
            start = log.stat().st_size if log.exists() else 0
            proc.start()
            assert await wait_for_log(log, b"assigned partitions", start, timeout_s=90), "consumer never joined"
            await asyncio.sleep(run_s)
            proc.kill()
        assert proc.kills == 3
        partial = await galleries(redis, crash_ns, hotels)
        # Then finish the backlog in-process with the same group and namespace.
        await run_until_caught_up(crash_settings, model, redis, partitions=3)

        reference = settings.model_copy(update={"namespace": reference_ns, "group_id": settings.group_id + "-ref"})
        await run_until_caught_up(reference, model, redis, partitions=3)

        expected = without_timestamps(await galleries(redis, reference_ns, hotels))
        got = without_timestamps(await galleries(redis, crash_ns, hotels))
        assert len(expected) == len(hotels)
        assert got == expected, "galleries after crashes differ from the uninterrupted run"
        assert len(partial) > 0, "the killed consumers made no progress at all; the test proved nothing"

        # Every bad event is in the DLQ (at least once per consumer group run; by source offset exactly once per group).
        dead = await read_topic(settings, settings.dlq_topic, expected=2 * bad)
        crash_dead = {(headers(r)["source_partition"], headers(r)["source_offset"]) for r in dead}
        assert len(crash_dead) == bad
    finally:
        proc.stop()
        await drop_namespace(redis, reference_ns)
        await drop_namespace(redis, crash_ns)
