"""Fencing by event and the partition-owned hotel state (issue 12), end to end.

Real Tansu broker, real Redis, real HTTP image server, real model (ONNX Runtime
on CPU), the real scorer. Each test publishes the events of one failure mode
and checks what the website reads afterwards:

- a late duplicate (producer retry: same event_id, new offset) after a replace
  or a delete changes nothing, with or without occurred_at;
- a crash-redo on one partition after the delete arrived on another partition
  does not resurrect the image;
- after a switch to a new topic (offsets restart at 0) its delete is applied;
- a hotel written by a foreign writer (another process) is reloaded, not
  overwritten;
- partitions revoked and reassigned under load lose nothing (compared with an
  uninterrupted reference run);
- the same replay into two new namespaces gives byte-identical documents,
  updated_at included.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid

import orjson
import pytest

from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.events import ImageDeleted, ImageUpserted, encode_event
from galleryrank.consumer.stream.kafka import create_topics, make_consumer, make_producer
from galleryrank.consumer.stream.produce import publish
from galleryrank.consumer.stream.scorer import Hooks
from tests.fault_support import image_states, mixed_events
from tests.helpers import drop_namespace, galleries, input_partitions, read_topic, run_until_caught_up

# Every test here runs the real pipeline for 8-27 s.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.onnx_model]


def upsert(hotel: str, image_id: str, url: str) -> ImageUpserted:
    return ImageUpserted(uuid.uuid4().hex, hotel, image_id, url, None)


def delete(hotel: str, image_id: str) -> ImageDeleted:
    return ImageDeleted(uuid.uuid4().hex, hotel, image_id, None)


def urls_of(server) -> list[str]:
    return [server.url(n) for n in sorted(server.images)]


async def send_to(settings, partition: int, events, topic: str | None = None) -> None:
    """Produce to one partition explicitly (another partitioner, or a topic whose partition count grew)."""
    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    try:
        for ev in events:
            key, value = encode_event(ev)
            await (await producer.send(topic or settings.topic, key=key, value=value, partition=partition))
    finally:
        await producer.stop()


async def shown(redis, settings, hotel: str) -> dict[str, str]:
    """image_id -> url of what the website shows for the hotel."""
    doc = (await galleries(redis, settings.namespace, [hotel])).get(hotel, {"images": []})
    return {i["image_id"]: i["url"] for i in doc["images"]}


# --- late duplicates ------------------------------------------------------------------------------
@pytest.mark.parametrize("with_time", [True, False], ids=["occurred_at", "no_occurred_at"])
async def test_a_late_duplicate_after_a_replace_or_a_delete_changes_nothing(
    settings, model, redis, small_server, with_time
):
    a, b, c = urls_of(small_server)[:3]
    when = (lambda s: f"2026-11-28T10:00:{s:02d}Z") if with_time else (lambda s: None)
    first = ImageUpserted("ev-first", "h-rep", "img-1", a, when(1))
    replace = ImageUpserted("ev-replace", "h-rep", "img-1", b, when(2))
    keep = ImageUpserted("ev-keep", "h-del", "img-0", c, when(1))
    added = ImageUpserted("ev-added", "h-del", "img-1", a, when(1))
    delete = ImageDeleted("ev-delete", "h-del", "img-1", when(3))
    await create_topics(settings, partitions=2)
    try:
        await publish(settings, [first, replace, keep, added, delete])
        await run_until_caught_up(settings, model, redis)
        assert await shown(redis, settings, "h-rep") == {"img-1": b}
        assert await shown(redis, settings, "h-del") == {"img-0": c}
        docs = {h: await redis.get(keys.gallery_key(settings.namespace, h)) for h in ("h-rep", "h-del")}
        versions = {h: await redis.get(keys.version_key(settings.namespace, h)) for h in ("h-rep", "h-del")}

        # The producer retries: the same events again, byte for byte, at new (higher) offsets.
        await publish(settings, [first, added])
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.stale == 2 and summary.dead_lettered == 0
        assert await shown(redis, settings, "h-rep") == {"img-1": b}, "the old URL came back"
        assert await shown(redis, settings, "h-del") == {"img-0": c}, "the deleted photo came back"
        assert {h: await redis.get(keys.gallery_key(settings.namespace, h)) for h in docs} == docs
        assert {h: await redis.get(keys.version_key(settings.namespace, h)) for h in versions} == versions
    finally:
        await drop_namespace(redis, settings.namespace)


# --- a redo on one partition after a delete on another ----------------------------------------------
async def test_a_redo_on_one_partition_after_a_delete_on_another_does_not_resurrect(
    settings, model, redis, small_server
):
    url = urls_of(small_server)[0]
    await create_topics(settings, partitions=2)
    try:
        # The hotel's events span two partitions (its partition count grew, or a producer used
        # another partitioner): the upload went to partition 0, the delete to partition 1.
        # No occurred_at: the event ids and the offsets per partition are all there is to go by.
        await send_to(settings, 0, [upsert("h-x", "img-1", url), upsert("h-x", "img-2", url)])
        await run_until_caught_up(settings, model, redis)
        assert set(await shown(redis, settings, "h-x")) == {"img-1", "img-2"}
        await send_to(settings, 1, [delete("h-x", "img-1")])
        await run_until_caught_up(settings, model, redis)
        assert set(await shown(redis, settings, "h-x")) == {"img-2"}

        # A crash before partition 0's commit (simulated: its committed offset goes back to 0)
        # redoes the upload after the delete.
        from aiokafka import TopicPartition

        rewind = make_consumer(settings, settings.group_id)
        await rewind.start()
        try:
            rewind.assign([TopicPartition(settings.topic, 0)])
            await rewind.commit({TopicPartition(settings.topic, 0): 0})
        finally:
            await rewind.stop()
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.events == 2 and summary.stale == 2
        assert set(await shown(redis, settings, "h-x")) == {"img-2"}, "the redo resurrected the deleted photo"
    finally:
        await drop_namespace(redis, settings.namespace)


# --- a new topic ------------------------------------------------------------------------------------
async def test_a_new_topic_whose_offsets_restart_applies_its_delete(settings, model, redis, small_server):
    urls = urls_of(small_server)
    await create_topics(settings, partitions=1)
    try:
        # On the old topic the photo was written at a high offset.
        await publish(settings, [upsert("h-t", f"img-{i}", urls[i % len(urls)]) for i in range(6)])
        await run_until_caught_up(settings, model, redis)
        assert len(await shown(redis, settings, "h-t")) == 6

        # The operators switch to a new topic: offsets restart at 0, and its first event deletes.
        switched = settings.model_copy(
            update={
                "topic": settings.topic + "-v2",
                "dlq_topic": settings.dlq_topic + "-v2",
                "group_id": "g2-" + settings.group_id,
            }
        )
        await create_topics(switched, partitions=1)
        await publish(switched, [delete("h-t", "img-5")])
        summary = await run_until_caught_up(switched, model, redis, partitions=1)
        assert summary.deleted == 1 and summary.stale == 0 and summary.dead_lettered == 0
        assert "img-5" not in await shown(redis, settings, "h-t"), "the delete at offset 0 was dropped as stale"
        assert len(await shown(redis, settings, "h-t")) == 5
        assert not await read_topic(switched, switched.dlq_topic, expected=0, timeout_s=2.0)
    finally:
        await drop_namespace(redis, settings.namespace)


# --- a foreign writer ---------------------------------------------------------------------------------
_FOREIGN = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    import redis.asyncio as aioredis
    from galleryrank.consumer.state.records import Fence, ImageChange
    from galleryrank.consumer.state.store import GalleryStore

    async def main(url, ns, hotel):
        client = aioredis.Redis.from_url(url)
        emb = np.ones(128, np.float32) / np.sqrt(128)
        rec = ImageChange("img-foreign", Fence(0, 7, "other-topic"), "ev-foreign", url="https://x/f.jpg",
                         aesthetic=9.5, area_probs={"facade": 1.0}, embedding=emb, model_version="m")
        result = await GalleryStore(client).apply(ns, [(hotel, rec)])
        await client.aclose()
        print(result.applied)

    asyncio.run(main(*sys.argv[1:]))
    """
)


def record(image_id: str, offset: int, aesthetic: float) -> ImageChange:
    import numpy as np

    rng = np.random.default_rng(offset)
    emb = rng.normal(size=128).astype(np.float32)
    return ImageChange(
        image_id,
        Fence(0, offset, "t-store"),
        f"ev-{image_id}-{offset}",
        url=f"https://x/{image_id}.jpg",
        aesthetic=aesthetic,
        area_probs={"bedroom": 0.7, "other": 0.3},
        embedding=emb / np.linalg.norm(emb),
        model_version="m",
    )


async def test_a_hotel_written_by_a_foreign_writer_is_reloaded_not_overwritten(redis, redis_url):
    ns, hotel = "test-foreign-writer", "h-f"
    await drop_namespace(redis, ns)
    store = GalleryStore(redis)
    try:
        first = await store.apply(ns, [(hotel, record("img-1", 1, 6.0))])
        assert first.loads == 1 and first.hotels_written == 1
        again = await store.apply(ns, [(hotel, record("img-2", 2, 5.0))])
        assert again.loads == 0 and again.conflicts == 0  # held in memory: no re-read

        # Another process writes the same hotel (a consumer of another deployment, a tool).
        out = subprocess.run(
            [sys.executable, "-c", _FOREIGN, redis_url, ns, hotel], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr

        third = await store.apply(ns, [(hotel, record("img-3", 3, 4.0))])
        assert third.conflicts == 1 and third.loads == 1 and third.applied == 1  # refused, reloaded, applied
        doc = orjson.loads(await redis.get(keys.gallery_key(ns, hotel)))
        assert sorted(i["image_id"] for i in doc["images"]) == ["img-1", "img-2", "img-3", "img-foreign"]
        assert int(await redis.get(keys.version_key(ns, hotel))) == 4

        # A galleryrank rerank in another process moves the version too: the next write reloads.
        rerank = subprocess.run(
            [sys.executable, "-m", "galleryrank", "rerank", "--namespace", ns, "--redis-url", redis_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert rerank.returncode == 0, rerank.stderr + rerank.stdout
        fourth = await store.apply(ns, [(hotel, record("img-4", 4, 3.0))])
        assert fourth.conflicts == 1 and fourth.applied == 1
        doc = orjson.loads(await redis.get(keys.gallery_key(ns, hotel)))
        assert {i["image_id"] for i in doc["images"]} == {"img-foreign", "img-1", "img-2", "img-3", "img-4"}
    finally:
        await drop_namespace(redis, ns)


# --- revoke + reassign under load -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_revoke_and_reassign_under_load_loses_nothing(settings, model, redis, small_server):
    partitions, hotels = 4, [f"r-{h}" for h in range(12)]
    urls = urls_of(small_server)
    events, _ = mixed_events(urls, small_server.url("missing.jpg"), len(hotels), 24, seed=12, prefix="r")
    await create_topics(settings, partitions=partitions)
    produced = asyncio.Event()
    members: dict[str, object] = {}

    async def produce_steadily(chunk: int = 16, every_s: float = 0.5) -> None:
        producer = make_producer(settings, linger_ms=5)
        await producer.start()
        try:
            for i in range(0, len(events), chunk):
                for ev in events[i : i + chunk]:
                    key, value = ev if isinstance(ev, tuple) else encode_event(ev)
                    await producer.send(settings.topic, key=key, value=value)
                await producer.flush()
                await asyncio.sleep(every_s)
        finally:
            await producer.stop()
        produced.set()

    def member(name: str, until_done: bool):
        async def stop_at(scorer) -> bool:
            if not until_done:
                return False
            from galleryrank.consumer.runtime import caught_up

            return (
                produced.is_set()
                and input_partitions(settings, scorer.progress().assigned) == partitions
                and await caught_up(scorer)
            )

        async def on_assigned(scorer, assigned) -> None:
            members[name] = scorer  # known once it has partitions (a busy member may never be idle)
            assignments.append((name, input_partitions(settings, assigned)))

        hooks = Hooks(stop_at=stop_at, on_assigned=on_assigned)
        return run_scorer(settings, model, redis=redis, install_signal_handlers=False, control=hooks)

    assignments: list[tuple[str, int]] = []
    producer = asyncio.create_task(produce_steadily())
    steady = asyncio.create_task(member("steady", until_done=True))
    try:
        for round_ in range(2):  # a second member joins (revoke), then leaves (reassign), twice
            await asyncio.sleep(3.0)
            visitor = asyncio.create_task(member(f"visitor-{round_}", until_done=False))
            deadline = asyncio.get_running_loop().time() + 60
            while f"visitor-{round_}" not in members or not members[f"visitor-{round_}"].progress().assigned:
                assert asyncio.get_running_loop().time() < deadline, "the visitor never got partitions"
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.0)
            members[f"visitor-{round_}"].stop()
            await asyncio.wait_for(visitor, 60)
        await asyncio.wait_for(producer, 120)
        await asyncio.wait_for(steady, 180)
        steady_sizes = [n for name, n in assignments if name == "steady"]
        assert len(steady_sizes) >= 3 and steady_sizes[-1] == partitions, assignments  # revoked, given back

        ref = settings.model_copy(
            update={
                "namespace": settings.namespace + "-ref",
                "group_id": settings.group_id + "-ref",
                "dlq_topic": settings.dlq_topic + "-ref",
            }
        )
        await run_until_caught_up(ref, model, redis, partitions=partitions)
        assert await galleries(redis, settings.namespace, hotels) == await galleries(redis, ref.namespace, hotels)
        assert await image_states(redis, settings.namespace, hotels) == await image_states(redis, ref.namespace, hotels)
    finally:
        producer.cancel()
        steady.cancel()
        await asyncio.gather(producer, steady, return_exceptions=True)
        await drop_namespace(redis, settings.namespace)
        await drop_namespace(redis, settings.namespace + "-ref")


# --- replays are byte-identical -----------------------------------------------------------------------
async def test_the_same_replay_into_two_new_namespaces_is_byte_identical(settings, model, redis, small_server):
    from galleryrank.consumer.bluegreen.replay import run_replay

    urls = urls_of(small_server)
    events, _ = mixed_events(urls, small_server.url("missing.jpg"), 4, 8, seed=21, prefix="b")
    await create_topics(settings, partitions=2)
    await publish(settings, events)
    one, two = settings.namespace + "-one", settings.namespace + "-two"
    hotels = [f"b-{h}" for h in range(4)]
    try:
        await run_replay(settings, one, model, redis)
        await run_replay(settings, two, model, redis)
        first = {h: await redis.get(keys.gallery_key(one, h)) for h in hotels}
        second = {h: await redis.get(keys.gallery_key(two, h)) for h in hotels}
        assert all(first.values()) and first == second  # updated_at included
        assert await image_states(redis, one, hotels) == await image_states(redis, two, hotels)
    finally:
        await drop_namespace(redis, one)
        await drop_namespace(redis, two)
