"""Backpressure on the real path: Tansu, Redis, HTTP downloads and the real model.

With a small in-flight cap the scorer must pause its partitions while work is
queued, keep every bounded stage within its bound, keep the event loop
responsive, resume, and still apply and commit every event.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import TopicPartition

from galleryrank.consumer import metrics
from galleryrank.consumer.runtime import build_scorer, caught_up
from galleryrank.consumer.stream.kafka import create_topics, make_consumer
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.consumer.stream.scorer import Hooks
from tests.helpers import drop_namespace, galleries

pytestmark = pytest.mark.integration

EVENTS = 48
HOTELS = 6
PARTITIONS = 2


async def committed_total(settings) -> int:
    probe = make_consumer(settings, settings.group_id)
    await probe.start()
    try:
        positions = [await probe.committed(TopicPartition(settings.topic, p)) for p in range(PARTITIONS)]
    finally:
        await probe.stop()
    return sum(p or 0 for p in positions)


async def test_small_in_flight_cap_pauses_partitions_and_still_applies_everything(
    settings, model, redis, image_server, sample_jpegs
):
    cap, batch = 6, 4
    settings = settings.model_copy(update={"max_in_flight": cap, "batch_size": batch})
    names = sorted(sample_jpegs)
    events = [
        upserted(f"h-bp-{i % HOTELS}", f"img-{i // HOTELS}", image_server.url(names[i % len(names)]))
        for i in range(EVENTS)
    ]
    await create_topics(settings, partitions=PARTITIONS)
    await publish(settings, events)

    scorer = build_scorer(settings, model, redis, control=Hooks(stop_at=caught_up))
    seen = {"in_flight": 0, "paused": 0, "paused_gauge": 0.0, "queued": 0, "loop_lag": 0.0}

    async def watch() -> None:
        while True:
            seen["in_flight"] = max(seen["in_flight"], scorer.progress().in_flight)
            seen["paused"] = max(seen["paused"], len(scorer.progress().paused))
            gauge = metrics.REGISTRY.get_sample_value("galleryrank_paused_partitions") or 0.0
            seen["paused_gauge"] = max(seen["paused_gauge"], gauge)
            seen["queued"] = max(seen["queued"], scorer.progress().queued_for_model)
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            seen["loop_lag"] = max(seen["loop_lag"], time.perf_counter() - t0 - 0.01)

    watcher = asyncio.create_task(watch())
    try:
        summary = await asyncio.wait_for(scorer.run(), timeout=240)
    finally:
        watcher.cancel()
    try:
        # Backpressure engaged, on the consumer and in the metric ...
        assert scorer.progress().pause_count >= 1
        assert seen["paused"] >= 1 and seen["paused_gauge"] >= 1
        # ... and bounded what is held: records in flight and images waiting for the model.
        assert seen["in_flight"] <= cap
        assert seen["queued"] <= 2 * batch
        # The loop kept turning: far below the heartbeat interval (session 6 s / 3).
        assert seen["loop_lag"] < 2.0, seen
        # Paused partitions fetch nothing: everything applied and committed means they were resumed.
        assert summary.applied == EVENTS and summary.dead_lettered == 0
        docs = await galleries(redis, settings.namespace, {f"h-bp-{h}" for h in range(HOTELS)})
        assert sum(len(d["images"]) for d in docs.values()) == EVENTS
        assert await committed_total(settings) == EVENTS
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_rebalance_mid_stream_drains_revoked_work_without_deadlock(
    settings, model, redis, image_server, sample_jpegs
):
    """A second scorer joins while the first is busy and paused: the first one's revoke
    listener finishes in-flight work of the lost partitions and commits it, both keep
    going, and every event ends up applied and committed."""
    events_n, hotels, partitions = 60, 12, 4
    settings = settings.model_copy(update={"max_in_flight": 8, "batch_size": 4, "stop_when_idle_s": 6.0})
    names = sorted(sample_jpegs)
    await create_topics(settings, partitions=partitions)
    await publish(
        settings,
        [
            upserted(f"h-rb-{i % hotels}", f"img-{i // hotels}", image_server.url(names[i % len(names)]))
            for i in range(events_n)
        ],
    )
    assignments: dict[str, list[set[int]]] = {"a": [], "b": []}

    def recorder(name):
        async def on_assigned(_scorer, assigned):
            assignments[name].append({tp.partition for tp in assigned})

        return on_assigned

    first = build_scorer(settings, model, redis, control=Hooks(on_assigned=recorder("a")))
    second = build_scorer(settings, model, redis, control=Hooks(on_assigned=recorder("b")))
    try:
        run_a = asyncio.create_task(first.run())
        while first.summary.applied < 8:  # mid-stream, with the in-flight cap reached
            assert not run_a.done(), "first scorer stopped early"
            await asyncio.sleep(0.1)
        run_b = asyncio.create_task(second.run())
        summary_a, summary_b = await asyncio.wait_for(asyncio.gather(run_a, run_b), timeout=240)

        # A rebalance happened: the first scorer was assigned twice, the second got partitions.
        assert len(assignments["a"]) >= 2 and assignments["a"][0] == set(range(partitions))
        assert any(assignments["b"]), assignments
        # ... and the first one lost partitions to it (revoke listener ran: drain + commit).
        assert any(a < set(range(partitions)) for a in assignments["a"][1:]), assignments
        # Every event applied (a redone event is a no-op: at most counted as stale) and committed.
        docs = await galleries(redis, settings.namespace, {f"h-rb-{h}" for h in range(hotels)})
        assert sum(len(d["images"]) for d in docs.values()) == events_n
        assert summary_a.applied + summary_b.applied >= events_n
        assert summary_a.dead_lettered == summary_b.dead_lettered == 0
        probe = make_consumer(settings, settings.group_id)
        await probe.start()
        try:
            committed = [await probe.committed(TopicPartition(settings.topic, p)) or 0 for p in range(partitions)]
        finally:
            await probe.stop()
        assert sum(committed) == events_n
    finally:
        await drop_namespace(redis, settings.namespace)
