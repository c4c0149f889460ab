"""Field bounds and per-hotel failure isolation through the real broker and Redis (issue 20).

- Future, far-past, out-of-range and edge-format times on upserts, deletes and overrides,
  next to normal events of the same and of another hotel in the same batch: a far-future
  occurred_at is dead-lettered as occurred_at_in_future and cannot freeze the image; every
  representable time is applied; a Kafka record timestamp past year 9999 is unknown.
- The largest valid id in every id field, in 1-, 2-, 3- and 4-byte UTF-8.
- 32 hotels in one write chunk where one hotel's stored state is a real unreadable value:
  the 31 others are written and committed, only the culprit's event is dead-lettered.
"""

from __future__ import annotations

import orjson
import pytest

from galleryrank.consumer import times
from galleryrank.consumer.state import keys
from galleryrank.consumer.stream.events import GalleryPinned, ImageDeleted, ImageHidden, ImageUpserted, encode_event
from galleryrank.consumer.stream.kafka import create_topics, make_producer
from galleryrank.consumer.stream.produce import publish
from tests.helpers import headers, read_topic, run_until_caught_up
from tests.integration.test_faults import committed_positions

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240), pytest.mark.onnx_model]

FUTURE = "2999-01-01T00:00:00Z"
PAST_9999 = "9999-12-31T23:59:59-01:00"  # valid ISO-8601; its UTC instant is in year 10000
WIDTHS = [("a", "b", 128), ("é", "è", 127), ("中", "文", 85), ("😀", "😁", 63)]


def _now(offset_s: float = 0.0) -> str:
    return times.iso_ms(times.now_ms() + int(offset_s * 1000))


async def test_times_out_of_bounds_and_the_largest_ids_next_to_normal_events(settings, model, redis, small_server):
    s = settings.model_copy(update={"max_clock_skew_s": 300.0})
    u = [small_server.url(n) for n in sorted(small_server.images)]
    h, other = "tb-1", "tb-2"
    events = [
        ImageUpserted("e1", h, "img-a", u[0], _now(-5)),
        ImageUpserted("e2", h, "img-a", u[1], FUTURE),  # broken clock: DLQ, must not freeze img-a
        ImageUpserted("e3", h, "img-b", u[2], _now(-5)),
        ImageDeleted("e4", h, "img-b", FUTURE),  # DLQ: img-b stays
        ImageHidden("e5", h, "img-b", PAST_9999),  # DLQ: img-b stays visible
        GalleryPinned("e6", h, ("img-b",), FUTURE),  # DLQ: no pins
        ImageUpserted("e7", h, "img-c", u[3], "0001-01-01T00:00:00Z"),  # far past: applied
        ImageUpserted("e8", h, "img-d", u[4], "0000-01-01T00:00:00Z"),  # not a date: absent, applied
        ImageUpserted("e9", h, "img-e", u[5], "2026-W49-1T00:00:00+05:30"),  # week date + offset
        ImageUpserted("e10", other, "img-x", u[0], _now(-5)),  # another hotel, same batch
        ImageDeleted("e11", h, "img-a", _now(-2)),  # a current delete wins over the refused 2999 upsert
        ImageUpserted("e12", h, "img-a", u[6], _now(-1)),  # and a re-upload with a new URL
    ]
    largest = []
    for char, other_char, count in WIDTHS:
        big, big2 = char * count, other_char * count
        largest.append(big)
        events += [ImageUpserted(big, big, big, u[1], _now(-3)), GalleryPinned(big2, big, (big,), _now(-2))]
    await create_topics(s, partitions=1)
    await publish(s, events)
    # A record whose Kafka timestamp is past year 9999 (an event without occurred_at).
    producer = make_producer(s)
    await producer.start()
    try:
        key, value = encode_event(ImageUpserted("e13", h, "img-f", u[7], None))
        await producer.send_and_wait(s.topic, key=key, value=value, timestamp_ms=253402300800000 + 5000)
    finally:
        await producer.stop()

    summary = await run_until_caught_up(s, model, redis, partitions=1)
    dead = await read_topic(s, s.dlq_topic, expected=4)
    reasons = sorted((headers(r)["reason"], headers(r).get("event_id")) for r in dead)
    assert reasons == [("occurred_at_in_future", e) for e in ("e2", "e4", "e5", "e6")]
    assert summary.dead_lettered == 4
    source = await read_topic(s, s.topic, expected=len(events) + 1)
    assert len(source) == len(events) + 1
    assert (await committed_positions(s, 1))[0] == max(r.offset for r in source) + 1, "all committed"

    doc = orjson.loads(await redis.get(keys.gallery_key(s.namespace, h)))
    shown = {i["image_id"]: i["url"] for i in doc["images"]}
    assert sorted(shown) == ["img-a", "img-b", "img-c", "img-d", "img-e", "img-f"]
    assert shown["img-a"] == u[6], "the re-upload after the refused far-future upsert must win"
    assert times.parse_iso_us(doc["updated_at"]) is not None
    assert [i["image_id"] for i in orjson.loads(await redis.get(keys.gallery_key(s.namespace, other)))["images"]] == [
        "img-x"
    ]
    for big in largest:
        doc = orjson.loads(await redis.get(keys.gallery_key(s.namespace, big)))
        assert doc["hotel_id"] == big and doc["images"][0]["image_id"] == big
        assert doc["images"][0]["reason"].startswith("pinned"), doc["images"][0]["reason"]


async def test_one_hotels_unreadable_state_fails_only_its_event_in_a_32_hotel_chunk(settings, model, redis):
    # A long coalescing window: all 32 hotels' changes are waiting together and go in one chunk.
    s = settings.model_copy(update={"write_coalesce_ms": 1500.0})
    hotels = [f"iso-{i}" for i in range(32)]
    culprit = hotels[17]
    # A real unreadable value: a stored image record in a format no version wrote.
    await redis.hset(keys.images_key(s.namespace, culprit), "img-0", b"\xee\x00not a record")
    events = [ImageHidden(f"hide-{hid}", hid, "img-1", _now(-1)) for hid in hotels]
    await create_topics(s, partitions=1)
    await publish(s, events)
    summary = await run_until_caught_up(s, model, redis, partitions=1)
    dead = await read_topic(s, s.dlq_topic, expected=1)
    source = await read_topic(s, s.topic, expected=32)
    culprit_offset = next(r.offset for r in source if r.key == culprit.encode())
    assert [(headers(r)["reason"], int(headers(r)["source_offset"])) for r in dead] == [
        ("internal_error", culprit_offset)
    ]
    assert summary.dead_lettered == 1 and summary.overrides == 31
    assert (await committed_positions(s, 1))[0] == max(r.offset for r in source) + 1
    for hid in hotels:
        overrides = await redis.get(keys.overrides_key(s.namespace, hid))
        if hid == culprit:
            assert overrides is None
        else:
            assert overrides is not None and b"img-1" in overrides, hid
            assert await redis.get(keys.gallery_key(s.namespace, hid)) is not None


async def test_a_flood_of_hides_of_unknown_images_is_bounded_and_the_excess_dead_lettered(settings, model, redis):
    from galleryrank.consumer.state.hotel import MAX_UNSEEN_FLAGS

    s = settings.model_copy(update={"max_in_flight": 256})
    extra = 5
    events = [ImageHidden(f"g-{i}", "flood-1", f"ghost-{i}", _now(-1)) for i in range(MAX_UNSEEN_FLAGS + extra)]
    events.append(ImageHidden("n-1", "flood-2", "img-1", _now(-1)))  # another hotel, same batches
    await create_topics(s, partitions=1)
    await publish(s, events)
    summary = await run_until_caught_up(s, model, redis, partitions=1)
    dead = await read_topic(s, s.dlq_topic, expected=extra)
    assert sorted(headers(r)["reason"] for r in dead) == ["too_many_unknown_overrides"] * extra
    assert summary.dead_lettered == extra and summary.overrides == MAX_UNSEEN_FLAGS + 1
    flags = orjson.loads(await redis.get(keys.overrides_key(s.namespace, "flood-1")))["hidden"]
    assert len(flags) == MAX_UNSEEN_FLAGS
    assert b"img-1" in await redis.get(keys.overrides_key(s.namespace, "flood-2"))
    source = await read_topic(s, s.topic, expected=len(events))
    assert (await committed_positions(s, 1))[0] == max(r.offset for r in source) + 1
