"""stream/redelivery.py against a real Redis: one round trip per loop turn, any doubt = unknown."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from galleryrank.consumer.state import keys
from galleryrank.consumer.state.records import NOTHING, Fence, ImageChange, encode_record
from galleryrank.consumer.stream.events import ImageUpserted
from galleryrank.consumer.stream.redelivery import KnownEvents


def _event(hotel: str, image: str, event_id: str) -> ImageUpserted:
    return ImageUpserted(event_id, hotel, image, f"http://x/{image}.jpg", None)


async def _store(redis, ns: str, hotel: str, image: str, event_id: str) -> None:
    fence = Fence(0, 1, "t")
    change = ImageChange(image, fence, event_id, url=f"http://x/{image}.jpg", model_version="m")
    await redis.hset(keys.images_key(ns, hotel), image, encode_record(change, NOTHING.after(fence, event_id)))


async def test_one_round_trip_answers_a_whole_poll_batch(redis):
    ns = f"rd-{uuid.uuid4().hex[:8]}"
    await _store(redis, ns, "h1", "a", "e-a")
    await _store(redis, ns, "h1", "b", "e-b")
    await _store(redis, ns, "h2", "c", "e-c")
    await redis.hset(keys.images_key(ns, "h2"), "broken", b"\x07not a record")
    known = KnownEvents(redis)
    asks = [
        _event("h1", "a", "e-a"),  # applied
        _event("h1", "a", "e-a"),  # the same record twice in one batch
        _event("h1", "b", "e-new"),  # the image is known, this event is not
        _event("h2", "c", "e-c"),  # applied, another hotel
        _event("h2", "gone", "e-x"),  # no such image
        _event("h2", "broken", "e-y"),  # unreadable: the normal path
        _event("h3", "z", "e-z"),  # no such hotel
    ]
    got = await asyncio.gather(*(known.applied(ns, e) for e in asks))
    assert got == [True, True, False, True, False, False, False]
    assert known.round_trips == 1  # not one per record
    assert known.skipped == 3
    # A later turn asks again (nothing is remembered between batches: the fence may move).
    assert await known.applied(ns, _event("h1", "b", "e-b")) is True
    assert known.round_trips == 2
    await redis.delete(keys.images_key(ns, "h1"), keys.images_key(ns, "h2"))


async def test_redis_down_means_the_normal_path():
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    known = KnownEvents(dead)
    got = await asyncio.gather(*(known.applied("ns", _event("h", str(i), "e")) for i in range(5)))
    assert got == [False] * 5 and known.skipped == 0 and known.round_trips == 0
    await dead.aclose()


async def test_a_cached_hotel_is_answered_without_redis():
    class State:
        applied = {"a": NOTHING.after(Fence(0, 1, "t"), "e-a")}

    class Cache:
        def get(self, key):
            return State() if key == ("ns", "h") else None

    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    known = KnownEvents(dead, Cache())
    assert await known.applied("ns", _event("h", "a", "e-a")) is True
    assert await known.applied("ns", _event("h", "b", "e-b")) is False
    assert known.round_trips == 0
    await dead.aclose()
