"""Editors stay in charge: pins and hidden photos through the real pipeline.

Real Tansu broker, real Redis, real HTTP image server, real model on CPU. The
override events are published by the real `galleryrank pin / unpin / hide /
unhide` commands, consumed by the real scorer, and must survive new uploads,
deletes, re-ranks, a SIGKILL and restart, and a replay into a new namespace
followed by promote.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from click.testing import CliRunner

from galleryrank.consumer.bluegreen import namespaces
from galleryrank.consumer.bluegreen.replay import run_replay
from galleryrank.consumer.cli.main import cli
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.consumer.stream.events import encode_event
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import deleted, hidden, pinned, publish, unhidden, upserted
from tests.crash_harness import ConsumerProcess
from tests.fault_support import wait_for_log
from tests.helpers import drop_namespace, galleries, headers, read_topic, run_until_caught_up, without_timestamps

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # every test here runs the real pipeline for 8-27 s


async def galleryrank(*args: str):
    """Run the real `galleryrank` command (in a thread: it has its own asyncio.run)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def editor(settings, *args: str) -> list[dict]:
    """An editor's command against the test's broker; the events it published."""
    result = await galleryrank(*args, "--bootstrap-servers", settings.bootstrap_servers, "--topic", settings.topic)
    assert result.exit_code == 0, result.output
    return [orjson.loads(line) for line in result.output.splitlines() if line.startswith("{")]


async def gallery(redis, namespace: str, hotel_id: str) -> dict:
    return (await galleries(redis, namespace, [hotel_id]))[hotel_id]


def ids(doc: dict) -> list[str]:
    return [i["image_id"] for i in doc["images"]]


def shown(doc: dict) -> list[tuple[str, str]]:
    return [(i["image_id"], i["reason"]) for i in doc["images"]]


def note(title: str, doc: dict) -> None:
    """The document, compact, for the issue note (visible with pytest -s)."""
    print(f"\n--- {title}\n" + json.dumps(doc))


async def test_pin_hide_unhide_unpin_through_the_pipeline(settings, model, redis, image_server, sample_jpegs):
    hotel = "h-editor"
    names = sorted(sample_jpegs)[:5]
    await create_topics(settings, partitions=2)
    await publish(settings, [upserted(hotel, f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    ns = settings.namespace
    try:
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.applied == 5
        before = await gallery(redis, ns, hotel)
        note("before", before)
        assert len(before["images"]) == 5 and before["pinned_missing"] == []
        assert all(i["reason"] for i in before["images"]) and before["images"][0]["reason"].startswith("hero")

        # Pin the two photos the model liked least, in this order.
        pins = [ids(before)[-1], ids(before)[-2]]
        sent = await editor(settings, "pin", hotel, *pins)
        assert [e["type"] for e in sent] == ["gallery.pinned"] and sent[0]["image_ids"] == pins
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.overrides == 1 and summary.applied == 0  # no download, no model
        after_pin = await gallery(redis, ns, hotel)
        note(f"after pin {' '.join(pins)}", after_pin)
        assert shown(after_pin)[:2] == [(pins[0], "pinned"), (pins[1], "pinned")]
        assert sorted(ids(after_pin)) == sorted(ids(before))

        # Hide the hero: gone from the document, kept in state.
        hero = ids(before)[0]
        await editor(settings, "hide", hotel, hero)
        await run_until_caught_up(settings, model, redis)
        after_hide = await gallery(redis, ns, hotel)
        note(f"after hide {hero}", after_hide)
        assert hero not in ids(after_hide) and len(after_hide["images"]) == 4
        assert ids(after_hide)[:2] == pins
        records = await GalleryStore(redis).hotel_records(ns, hotel)
        assert hero in records and not records[hero].deleted
        version = await redis.get(keys.version_key(ns, hotel))

        # Unhide: back where its stored scores put it, with no rescore.
        await editor(settings, "unhide", hotel, hero)
        summary = await run_until_caught_up(settings, model, redis)
        assert summary.applied == 0 and summary.overrides == 1
        after_unhide = await gallery(redis, ns, hotel)
        note(f"after unhide {hero}", after_unhide)
        assert without_timestamps({hotel: after_unhide}) == without_timestamps({hotel: after_pin})
        assert int(await redis.get(keys.version_key(ns, hotel))) == int(version) + 1

        # Unpin everything: the automatic order again.
        await editor(settings, "unpin", hotel)
        await run_until_caught_up(settings, model, redis)
        after_unpin = await gallery(redis, ns, hotel)
        assert without_timestamps({hotel: after_unpin}) == without_timestamps({hotel: before})
    finally:
        await drop_namespace(redis, ns)


async def test_late_duplicates_change_nothing_and_bad_overrides_go_to_the_dlq(
    settings, model, redis, image_server, sample_jpegs
):
    hotel = "h-fence"
    names = sorted(sample_jpegs)[:3]
    await create_topics(settings, partitions=1)
    hide = hidden(hotel, "img-0")
    pin = pinned(hotel, ["img-2"])
    await publish(
        settings, [*(upserted(hotel, f"img-{i}", image_server.url(n)) for i, n in enumerate(names)), hide, pin]
    )
    ns = settings.namespace
    try:
        await run_until_caught_up(settings, model, redis, partitions=1)
        await publish(settings, [unhidden(hotel, "img-0")])
        await run_until_caught_up(settings, model, redis, partitions=1)
        settled = await redis.get(keys.gallery_key(ns, hotel))
        assert "img-0" in ids(orjson.loads(settled)) and ids(orjson.loads(settled))[0] == "img-2"
        version = await redis.get(keys.version_key(ns, hotel))

        # The producer re-sends the old hide (same event id, new offset) and an old pin;
        # and bad override events arrive.
        bad = {
            "invalid_image_ids": (
                hotel.encode(),
                b'{"event_id":"b1","type":"gallery.pinned","hotel_id":"h-fence","image_ids":[]}',
            ),
            "missing_field": (hotel.encode(), b'{"event_id":"b2","type":"image.hidden","hotel_id":"h-fence"}'),
            "wrong_type": (
                hotel.encode(),
                b'{"event_id":"b3","type":"gallery.unpinned","hotel_id":"h-fence","image_ids":"img-2"}',
            ),
            "key_mismatch": (
                b"other",
                b'{"event_id":"b4","type":"image.unhidden","hotel_id":"h-fence","image_id":"img-0"}',
            ),
        }
        await publish(settings, [encode_event(hide), encode_event(pin), *bad.values()])
        summary = await run_until_caught_up(settings, model, redis, partitions=1)
        assert summary.stale == 2 and summary.dead_lettered == len(bad)
        assert await redis.get(keys.gallery_key(ns, hotel)) == settled
        assert await redis.get(keys.version_key(ns, hotel)) == version
        dead = await read_topic(settings, settings.dlq_topic, expected=len(bad))
        assert sorted(headers(r)["reason"] for r in dead) == sorted(bad)

        # A second consumer group reading the whole topic again into the same namespace: no-ops.
        again = settings.model_copy(update={"group_id": settings.group_id + "-again"})
        await run_until_caught_up(again, model, redis, partitions=1)
        assert await redis.get(keys.gallery_key(ns, hotel)) == settled
    finally:
        await drop_namespace(redis, ns)


async def test_overrides_survive_uploads_deletes_rerank_and_replay_then_promote(
    settings, model, private_redis, private_redis_url, image_server, sample_jpegs
):
    settings = settings.model_copy(update={"redis_url": private_redis_url})
    redis, ns, hotel = private_redis, settings.namespace, "h-survive"
    names = sorted(sample_jpegs)
    url = image_server.url
    await create_topics(settings, partitions=2)
    await publish(settings, [upserted(hotel, f"img-{i}", url(names[i])) for i in range(4)])
    await publish(settings, [pinned(hotel, ["img-2", "img-0", "img-9"]), hidden(hotel, "img-1")])
    replayed = f"{ns}-replay"
    try:
        await run_until_caught_up(settings, model, redis)
        doc = await gallery(redis, ns, hotel)
        assert ids(doc)[:2] == ["img-2", "img-0"] and "img-1" not in ids(doc)
        assert doc["pinned_missing"] == ["img-9"]

        # New uploads (one is the missing pin), a re-upload of the hidden photo, a delete of a pinned one.
        await publish(
            settings,
            [
                upserted(hotel, "img-4", url(names[4])),
                upserted(hotel, "img-1", url(names[5])),
                deleted(hotel, "img-0"),
                upserted(hotel, "img-9", url(names[6])),
            ],
        )
        await run_until_caught_up(settings, model, redis)
        doc = await gallery(redis, ns, hotel)
        assert shown(doc)[:2] == [("img-2", "pinned"), ("img-9", "pinned")]
        assert "img-1" not in ids(doc) and "img-0" not in ids(doc) and "img-4" in ids(doc)
        assert doc["pinned_missing"] == ["img-0"]

        # Re-rank from stored scores: same document.
        result = await galleryrank("rerank", "--namespace", ns, "--redis-url", private_redis_url)
        assert result.exit_code == 0, result.output
        reranked = await gallery(redis, ns, hotel)
        assert without_timestamps({hotel: reranked}) == without_timestamps({hotel: doc})

        # Replay the topic into a new namespace: the same overrides, the same document; then promote.
        await run_replay(settings, replayed, model, redis)
        again = await gallery(redis, replayed, hotel)
        assert without_timestamps({hotel: again}) == without_timestamps({hotel: doc})
        await redis.set(keys.ACTIVE_KEY, ns)
        previous = await namespaces.promote(redis, replayed)
        assert previous == ns
        active = (await redis.get(keys.ACTIVE_KEY)).decode()
        website = orjson.loads(await redis.get(keys.gallery_key(active, hotel)))  # what the website reads
        assert active == replayed and shown(website)[:2] == [("img-2", "pinned"), ("img-9", "pinned")]
        assert "img-1" not in ids(website)
    finally:
        await drop_namespace(redis, ns)
        await drop_namespace(redis, replayed)


@pytest.mark.slow
async def test_overrides_survive_sigkill_and_restart(settings, model, redis, image_server, sample_jpegs, tmp_path):
    names = sorted(sample_jpegs)
    hotels = [f"h-kill-{h}" for h in range(6)]
    events = []
    for i in range(6):
        for h, hid in enumerate(hotels):
            events.append(upserted(hid, f"img-{i}", image_server.url(names[(i + h) % len(names)])))
            if i == 2:
                events.append(pinned(hid, [f"img-{(h + 1) % 3}", "img-5"]))
            if i == 3:
                events.append(hidden(hid, f"img-{h % 3}"))
            if i == 4 and h % 2 == 0:
                events.append(unhidden(hid, f"img-{h % 3}"))
    await create_topics(settings, partitions=3)
    await publish(settings, events)
    reference_ns, crash_ns = settings.namespace + "-ref", settings.namespace + "-crash"
    crash = settings.model_copy(
        update={"namespace": crash_ns, "group_id": settings.group_id + "-crash", "batch_size": 4}
    )
    log = tmp_path / "consumer.log"
    proc = ConsumerProcess(crash, log)
    try:
        for run_s in (2.0, 3.0):
            start = log.stat().st_size if log.exists() else 0
            proc.start()
            assert await wait_for_log(log, b"assigned partitions", start, timeout_s=90), "consumer never joined"
            await asyncio.sleep(run_s)
            proc.kill()
        await run_until_caught_up(crash, model, redis, partitions=3)
        reference = settings.model_copy(update={"namespace": reference_ns, "group_id": settings.group_id + "-ref"})
        await run_until_caught_up(reference, model, redis, partitions=3)
        expected = without_timestamps(await galleries(redis, reference_ns, hotels))
        got = without_timestamps(await galleries(redis, crash_ns, hotels))
        assert len(expected) == len(hotels) and got == expected
        for h, hid in enumerate(hotels):
            doc = expected[hid]
            assert shown(doc)[:2] == [(f"img-{(h + 1) % 3}", "pinned"), ("img-5", "pinned")]
            assert (f"img-{h % 3}" in ids(doc)) == (h % 2 == 0)  # hidden unless unhidden again
    finally:
        proc.stop()
        await drop_namespace(redis, reference_ns)
        await drop_namespace(redis, crash_ns)
