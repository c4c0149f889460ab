"""Blue/green that never loses or hides an event: real Tansu, real Redis, real model.

- rollback to an earlier namespace reprocesses exactly what it missed, on every
  partition: ones that were empty when it was left, one it has no end offset
  for (what a partition created after it was left looks like: Tansu refuses
  CreatePartitions, so the test removes that partition's `end:<p>`), with a
  consumer restart between the promote and the rollback;
- a promote never shows a reader an older gallery than the one it saw before:
  readers poll while events (upserts and deletes) flow before, during and
  after the promote.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis
from aiokafka.partitioner import DefaultPartitioner
from click.testing import CliRunner

from galleryrank.consumer.bluegreen import namespaces
from galleryrank.consumer.bluegreen.replay import run_replay
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import deleted, publish, upserted
from tests.helpers import drop_namespace, galleries

pytestmark = pytest.mark.integration


def ns_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def hotel_on(partition: int, partitions: int, prefix: str) -> str:
    """A hotel id whose events the default partitioner (murmur2 of the key) puts on `partition`."""
    pick = DefaultPartitioner()
    every = list(range(partitions))
    return next(f"{prefix}-{i}" for i in range(10_000) if pick(f"{prefix}-{i}".encode(), every, every) == partition)


async def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def image_ids(redis, ns: str, hotel: str) -> set[str] | None:
    doc = (await galleries(redis, ns, [hotel])).get(hotel)
    return None if doc is None else {i["image_id"] for i in doc["images"]}


async def holds(redis, ns: str, expected: dict[str, set[str]]) -> bool:
    """Every hotel of `expected` has exactly those images in `ns`."""
    for hotel, ids in expected.items():
        if await image_ids(redis, ns, hotel) != ids:
            return False
    return True


def start_live(settings, model, redis):
    return asyncio.create_task(run_scorer(settings, model, redis=redis, install_signal_handlers=False))


async def stop(task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_rollback_reprocesses_what_the_namespace_missed_on_every_partition(
    settings, model, private_redis, private_redis_url, image_server, sample_jpegs, caplog
):
    """The reproduction of issue 16.1, with a consumer restart between promote and rollback."""
    redis = private_redis
    partitions = 12
    base = settings.model_copy(update={"redis_url": private_redis_url})
    live_settings = base.model_copy(update={"namespace": None})
    group, topic = live_settings.group_id, live_settings.topic
    live_ns, v2 = ns_name("live"), ns_name("v2")
    names = sorted(sample_jpegs)
    url = image_server.url
    empty = [2, 6]  # no event before the promote: no committed offset when `live` is left
    created_later = 9  # no event before the promote either, and `live` records no end for it
    busy = [p for p in range(partitions) if p not in (*empty, created_later)]
    early = {p: hotel_on(p, partitions, "early") for p in busy}
    late = {p: hotel_on(p, partitions, "late") for p in (*empty, created_later)}

    await create_topics(base, partitions=partitions)
    await redis.set(keys.ACTIVE_KEY, live_ns)
    await publish(base, [upserted(h, "img-0", url(names[i % len(names)])) for i, h in enumerate(early.values())])
    live = start_live(live_settings, model, redis)
    try:
        await _wait_for(lambda: holds(redis, live_ns, dict.fromkeys(early.values(), {"img-0"})), 90, "live")
        replay = await run_replay(base, v2, model, redis)
        assert replay.complete and all(replay.plan.end[p] == 0 for p in (*empty, created_later))

        # Promote v2 (two steps: the live consumer catches v2 up, then the site switches).
        previous = await namespaces.promote(redis, v2, group_id=group, topic=topic, wait_s=60)
        assert previous == live_ns and await namespaces.active_namespace(redis) == v2
        live_ends = namespaces.end_offsets(await namespaces.read_meta(redis, live_ns))
        assert set(live_ends) == set(range(partitions))  # every partition, the empty ones too
        assert all(live_ends[p] == 0 for p in (*empty, created_later))
        # What `live` looks like had partition 9 been created after it was left: no end for it.
        await redis.hdel(keys.meta_key(live_ns), f"end:{created_later}")

        # Events on the formerly empty partitions land in v2 only.
        await publish(base, [upserted(h, "img-new", url(names[p % len(names)])) for p, h in late.items()])

        await _wait_for(lambda: holds(redis, v2, dict.fromkeys(late.values(), {"img-new"})), 60, "late events in v2")
        assert [await image_ids(redis, live_ns, h) for h in late.values()] == [None] * len(late)

        # A consumer restart between promote and rollback.
        await stop(live)
        live = start_live(live_settings, model, redis)
        await publish(base, [deleted(early[busy[0]], "img-0")])  # one more event, after the restart
        await _wait_for(lambda: _empty(redis, v2, early[busy[0]]), 60, "the delete in v2")

        # Rollback: a plain promote, no --force.
        with caplog.at_level("WARNING", logger="galleryrank.consumer.bluegreen.handover"):
            previous = await namespaces.promote(redis, live_ns, group_id=group, topic=topic, wait_s=60)
        assert previous == v2 and await namespaces.active_namespace(redis) == live_ns
        assert not [r for r in caplog.records if "records no end offset" in r.getMessage()]
        for p, h in late.items():  # every partition: the formerly empty ones and the "created later" one
            assert await image_ids(redis, live_ns, h) == {"img-new"}, (p, h)
        assert await image_ids(redis, live_ns, early[busy[0]]) == set()
        for h in early.values():
            assert await image_ids(redis, live_ns, h) == await image_ids(redis, v2, h)

        # Dropping v2 loses nothing the site shows.
        runner = await asyncio.to_thread(
            CliRunner().invoke,
            __import__("galleryrank.consumer.cli.main", fromlist=["cli"]).cli,
            ["drop", v2, "--yes", "--redis-url", private_redis_url],
        )
        assert runner.exit_code == 0, runner.output
        for h in late.values():
            assert await image_ids(redis, live_ns, h) == {"img-new"}
    finally:
        await stop(live)
        await redis.delete(namespaces.markers_key(group))
        for ns in (live_ns, v2):
            await drop_namespace(redis, ns)


async def _empty(redis, ns, hotel) -> bool:
    return await image_ids(redis, ns, hotel) == set()


@pytest.mark.slow  # ~50 s of polling readers around a promote under traffic
async def test_promote_never_shows_readers_an_older_gallery(
    settings, model, private_redis, private_redis_url, image_server, sample_jpegs
):
    """Readers poll GET active + GET gallery while upserts and deletes flow before, during and after
    the promote: an image a reader saw stays visible unless an event deleted it, and a delete stays applied."""
    redis = private_redis
    partitions = 4
    base = settings.model_copy(update={"redis_url": private_redis_url})
    live_settings = base.model_copy(update={"namespace": None})
    group, topic = live_settings.group_id, live_settings.topic
    old, new = ns_name("old"), ns_name("new")
    names = sorted(sample_jpegs)
    url = image_server.url
    hotels = [f"w-{i}" for i in range(6)]
    counter = iter(range(1_000_000))
    present: dict[str, list[str]] = {h: [] for h in hotels}  # images upserted and not deleted, per hotel
    deletes: set[tuple[str, str]] = set()  # (hotel, image) delete events published

    def next_events(n: int) -> list:
        out = []
        for _ in range(n):
            i = next(counter)
            h = hotels[i % len(hotels)]
            if i % 3 == 2 and present[h]:
                image = present[h].pop(0)
                deletes.add((h, image))
                out.append(deleted(h, image))
            else:
                image = f"img-{i}"  # never re-used: once deleted, an image must stay gone
                present[h].append(image)
                out.append(upserted(h, image, url(names[i % len(names)])))
        return out

    await create_topics(base, partitions=partitions)
    await redis.set(keys.ACTIVE_KEY, old)
    await publish(base, next_events(18))
    live = start_live(live_settings, model, redis)
    violations: list[str] = []
    seen_ns: list[list[str]] = []
    stop_readers = asyncio.Event()

    async def reader() -> None:
        seen: dict[str, set[str]] = {h: set() for h in hotels}
        gone: dict[str, set[str]] = {h: set() for h in hotels}
        order: list[str] = []
        reads = aioredis.Redis.from_url(private_redis_url)
        try:
            while not stop_readers.is_set():
                for h in hotels:
                    active = (await reads.get(keys.ACTIVE_KEY)).decode()
                    raw = await reads.get(keys.gallery_key(active, h))
                    ids = set() if raw is None else {i["image_id"] for i in __import__("orjson").loads(raw)["images"]}
                    if not order or order[-1] != active:
                        order.append(active)
                    for image in seen[h] - ids:
                        if (h, image) not in deletes:
                            violations.append(f"{h}/{image} seen, then missing in {active} (not deleted)")
                        gone[h].add(image)
                    for image in ids & gone[h]:
                        violations.append(f"{h}/{image} deleted, then back in {active}")
                    seen[h] = ids
                await asyncio.sleep(0.005)
        finally:
            await reads.aclose()
            seen_ns.append(order)

    async def producer(stop_at: asyncio.Event) -> None:
        while not stop_at.is_set():
            await publish(base, next_events(2))
            await asyncio.sleep(0.1)

    try:
        await _wait_for(lambda: holds(redis, old, {h: set(present[h]) for h in hotels}), 90, "the live consumer")
        await run_replay(base, new, model, redis)
        stop_producing = asyncio.Event()
        flow = asyncio.create_task(producer(stop_producing))
        await asyncio.sleep(1.5)  # events after the replay's end: only `old` has them
        readers = [asyncio.create_task(reader()) for _ in range(3)]
        await asyncio.sleep(1.0)
        started = time.monotonic()
        previous = await namespaces.promote(redis, new, group_id=group, topic=topic, wait_s=60)
        switch_s = time.monotonic() - started
        assert previous == old and await namespaces.active_namespace(redis) == new
        await asyncio.sleep(2.0)  # events keep flowing after the switch
        stop_producing.set()
        await flow

        await _wait_for(lambda: holds(redis, new, {h: set(present[h]) for h in hotels}), 60, "every event in new")
        await asyncio.sleep(0.3)
        stop_readers.set()
        await asyncio.gather(*readers)
        print(f"\npromote -> switch: {switch_s:.2f} s; reader namespace sequences {seen_ns}")
        assert not violations, violations[:10]
        assert all(order == [old, new] for order in seen_ns), seen_ns  # each reader switched once
        assert deletes and len(deletes) >= 5  # deletes did flow
    finally:
        stop_readers.set()
        await stop(live)
        await redis.delete(namespaces.markers_key(group))
        for ns in (old, new):
            await drop_namespace(redis, ns)


async def test_operations_commands_run_without_the_model_stack(private_redis, private_redis_url):
    """namespaces, compare, promote, drop against a real Redis: none of them imports torch/onnx."""
    from tests.unit.test_cli import heavy_modules_of

    redis = private_redis
    a, b = ns_name("ops-a"), ns_name("ops-b")
    for ns, score in ((a, 5.0), (b, 6.0)):
        doc = {
            "hotel_id": "h-1",
            "model_version": f"m-{ns}",
            "images": [{"image_id": "i-1", "url": "u", "area": "room", "area_confidence": 1.0, "aesthetic": score}],
        }
        await redis.set(keys.gallery_key(ns, "h-1"), __import__("orjson").dumps(doc))
        await redis.sadd(keys.hotels_key(ns), "h-1")
        await namespaces.write_meta(redis, ns, model_version=f"m-{ns}", status="complete", created_at="now")
    await redis.set(keys.ACTIVE_KEY, a)
    flags = ["--redis-url", private_redis_url]
    try:
        for args, expect in (
            (["namespaces"], "live"),
            (["compare", a, b], "1 hotels in both"),
            (["promote", b], f"active namespace: {b} (was {a})"),
            (["drop", a], "nothing deleted"),
            (["drop", a, "--yes"], f"dropped namespace {a}"),
        ):
            out, heavy = await asyncio.to_thread(heavy_modules_of, *args, *flags)
            assert out.returncode == 0 and expect in out.stdout, (args, out.stdout, out.stderr)
            assert heavy == [], f"galleryrank {' '.join(args)} imported {heavy}"
        assert await namespaces.active_namespace(redis) == b and await namespaces.count_keys(redis, a) == 0
    finally:
        for ns in (a, b):
            await drop_namespace(redis, ns)
