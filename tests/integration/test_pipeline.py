"""Events in Kafka -> ranked galleries in Redis, through the real scorer.

Real Tansu broker, real Redis, real HTTP image server, real model on CPU.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from galleryrank.consumer.state import keys
from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import deleted, publish, upserted
from galleryrank.ranking.types import RankingConfig
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up

pytestmark = pytest.mark.integration

CONTRACT_IMAGE_FIELDS = {"image_id": str, "url": str, "area": str, "area_confidence": float, "aesthetic": float}


async def test_events_become_ranked_galleries_per_read_contract(settings, model, redis, image_server, sample_jpegs):
    names = sorted(sample_jpegs)
    hotels = {f"h-{i}": names[i : i + 4] for i in range(3)}
    events = [upserted(h, f"img-{j}", image_server.url(n)) for h, ns in hotels.items() for j, n in enumerate(ns)]
    await publish(settings, events)
    assert settings.namespace != "live"  # the fixture's own namespace, so a write to live would show
    live_before = await redis.get(keys.gallery_key("live", "h-0"))
    try:
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.applied == 12 and summary.dead_lettered == 0

        docs = await galleries(redis, settings.namespace, hotels)
        assert set(docs) == set(hotels)
        store = GalleryStore(redis)
        for hid, doc in docs.items():
            assert doc["hotel_id"] == hid
            assert doc["model_version"] == model.model_version
            assert doc["updated_at"].endswith("Z")
            assert {img["image_id"] for img in doc["images"]} == {f"img-{j}" for j in range(4)}
            for img in doc["images"]:
                for field, typ in CONTRACT_IMAGE_FIELDS.items():
                    assert isinstance(img[field], typ), (field, img)
                assert 1.0 <= img["aesthetic"] <= 10.0
                assert 0.0 < img["area_confidence"] <= 1.0
                assert img["area"] in model.areas
            # Display order is exactly the ranking of the stored per-image state.
            records = await store.hotel_records(settings.namespace, hid)
            ranked = HotelState.from_records(hid, records.values(), RankingConfig()).ranked()[0]
            assert ranked == [i["image_id"] for i in doc["images"]]
        # The consumer followed the namespace it was given, not the active one: live is untouched.
        assert await redis.get(keys.gallery_key("live", "h-0")) == live_before
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_deleted_image_disappears_and_gallery_is_reranked(settings, model, redis, image_server, sample_jpegs):
    names = sorted(sample_jpegs)[:3]
    await publish(settings, [upserted("h-del", f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    try:
        await run_until_caught_up(settings, model, redis)
        before = (await galleries(redis, settings.namespace, ["h-del"]))["h-del"]
        assert len(before["images"]) == 3

        await publish(settings, [deleted("h-del", "img-1")])
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.deleted == 1
        after = (await galleries(redis, settings.namespace, ["h-del"]))["h-del"]
        assert [i["image_id"] for i in after["images"]] == [
            i["image_id"] for i in before["images"] if i["image_id"] != "img-1"
        ]
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.fixture
async def bad_server():
    """An image server that misbehaves on purpose."""

    async def hang(_):
        await asyncio.sleep(30)
        return web.Response(body=b"late")

    async def html(_):
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def corrupt(_):
        return web.Response(body=b"\xff\xd8\xff\xe0 this is not really a jpeg", content_type="image/jpeg")

    async def boom(_):
        return web.Response(status=500, text="upstream broke")

    app = web.Application()
    app.router.add_get("/hang.jpg", hang)
    app.router.add_get("/page.jpg", html)
    app.router.add_get("/corrupt.jpg", corrupt)
    app.router.add_get("/boom.jpg", boom)
    runner = web.AppRunner(app, shutdown_timeout=0.1)  # the /hang handler never ends: do not wait 60 s for it
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_each_bad_input_lands_in_dlq_and_next_event_is_processed(
    settings, model, redis, image_server, sample_jpegs, bad_server
):
    settings = settings.model_copy(update={"download_timeout_s": 1.5, "download_retries": 1})
    good = sorted(sample_jpegs)[0]
    bad = {
        "invalid_json": (b"h-bad", b"{not json"),
        "missing_field": (
            b"h-bad",
            b'{"event_id":"e1","type":"image.upserted","hotel_id":"h-bad","url":"http://x/y.jpg"}',
        ),
        "wrong_type": (
            b"h-bad",
            b'{"event_id":"e2","type":"image.upserted","hotel_id":"h-bad","image_id":7,"url":"http://x"}',
        ),
        "unknown_type": (b"h-bad", b'{"event_id":"e3","type":"image.rotated","hotel_id":"h-bad","image_id":"i"}'),
        "http_404": upserted("h-bad", "i404", image_server.url("missing.jpg")),
        "http_500": upserted("h-bad", "i500", f"{bad_server}/boom.jpg"),
        "timeout": upserted("h-bad", "ihang", f"{bad_server}/hang.jpg"),
        "not_image_content_type": upserted("h-bad", "ihtml", f"{bad_server}/page.jpg"),
        "corrupt": upserted("h-bad", "icorrupt", f"{bad_server}/corrupt.jpg"),
    }
    records = []
    for value in bad.values():
        records.append(value)
    # After all of them, a good event for the same hotel (same partition).
    records.append(upserted("h-bad", "good", image_server.url(good)))
    await create_topics(settings, partitions=1)
    await publish(settings, records)
    try:
        summary = await run_until_caught_up(settings, model, redis, partitions=1)
        assert summary.dead_lettered == len(bad)
        assert summary.applied == 1
        doc = (await galleries(redis, settings.namespace, ["h-bad"]))["h-bad"]
        assert [i["image_id"] for i in doc["images"]] == ["good"]

        dead = await read_topic(settings, settings.dlq_topic, expected=len(bad))
        assert len(dead) == len(bad)
        reasons = [headers(r)["reason"] for r in sorted(dead, key=lambda r: int(headers(r)["source_offset"]))]
        expected_prefixes = list(bad)
        for reason, expected in zip(reasons, expected_prefixes):
            if expected == "corrupt":
                assert reason in ("corrupt_image", "not_image", "truncated_image"), reason
            else:
                assert reason == expected, (reason, expected)
        for rec in dead:
            h = headers(rec)
            assert h["error"] and h["source_topic"] == settings.topic
            assert rec.key == b"h-bad"  # the original key and value are kept
        original_values = {(v[1] if isinstance(v, tuple) else None) for v in bad.values()} - {None}
        assert original_values <= {r.value for r in dead}

        # Offsets were committed past every record, bad ones included.
        from aiokafka import TopicPartition

        from galleryrank.consumer.stream.kafka import make_consumer

        probe = make_consumer(settings, settings.group_id)
        await probe.start()
        try:
            committed = await probe.committed(TopicPartition(settings.topic, 0))
        finally:
            await probe.stop()
        assert committed == len(records)
    finally:
        await drop_namespace(redis, settings.namespace)


@pytest.mark.slow  # > 7 s: in make test, not in make test-fast
async def test_replayed_events_change_nothing(settings, model, redis, image_server, sample_jpegs):
    names = sorted(sample_jpegs)[:4]
    await publish(settings, [upserted("h-idem", f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    try:
        await run_until_caught_up(settings, model, redis)
        first = await redis.get(keys.gallery_key(settings.namespace, "h-idem"))
        version = await redis.get(keys.version_key(settings.namespace, "h-idem"))
        # A second consumer group reads the same events again into the same namespace.
        again = settings.model_copy(update={"group_id": settings.group_id + "-again"})
        summary = await run_until_caught_up(again, model, redis)
        assert summary.stale == 4
        assert await redis.get(keys.gallery_key(settings.namespace, "h-idem")) == first
        assert await redis.get(keys.version_key(settings.namespace, "h-idem")) == version
    finally:
        await drop_namespace(redis, settings.namespace)
