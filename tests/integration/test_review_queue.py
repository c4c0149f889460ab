"""The review queue and the trusted-proxy header over real HTTP and real Redis (no broker, no model:
the hotel's state is written by the real GalleryStore from hand-made scores)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import keys, reviewers
from galleryrank.consumer.state.overrides import AreaChange, RatingChange
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from tests.helpers import drop_namespace

pytestmark = [pytest.mark.integration]


def photo(image_id: str, offset: int, aesthetic: float, probs: dict[str, float], emb: np.ndarray) -> ImageChange:
    return ImageChange(
        image_id, Fence(0, offset, "hotel-images"), f"e-{image_id}", url=f"http://photos.example/{image_id}.jpg",
        aesthetic=aesthetic, area_probs=probs, embedding=emb / np.linalg.norm(emb), model_version="m-1",
    )  # fmt: skip


@pytest.fixture
async def hotel(redis):
    tag = uuid.uuid4().hex[:6]
    ns, hotel_id = f"test-queue-{tag}", f"h-queue-{tag}"
    rng = np.random.default_rng(0)
    base = [rng.normal(size=64).astype(np.float32) for _ in range(6)]
    dup = base[3] + 0.001 * rng.normal(size=64).astype(np.float32)  # a near duplicate of "sure-kitchen"
    records = [
        photo("sure-bed", 1, 7.0, {"bedroom": 0.97, "kitchen": 0.02, "bathroom": 0.01}, base[0]),  # the hero
        photo("unsure", 2, 5.0, {"bedroom": 0.40, "kitchen": 0.35, "bathroom": 0.25}, base[1]),
        photo("suspect", 3, 4.0, {"bathroom": 0.99, "kitchen": 0.005, "bedroom": 0.005}, base[2]),
        photo("sure-kitchen", 4, 6.0, {"kitchen": 0.95, "bedroom": 0.03, "bathroom": 0.02}, base[3]),
        photo("dup-kitchen", 5, 3.0, {"kitchen": 0.90, "bedroom": 0.05, "bathroom": 0.05}, dup),
        photo("done", 6, 2.0, {"bedroom": 0.96, "kitchen": 0.02, "bathroom": 0.02}, base[5]),
    ]
    labels = [
        AreaChange("dup-kitchen", Fence(0, 1, "labels"), "l-1", "bathroom", "carol"),  # now disagrees with its twin
        AreaChange("done", Fence(0, 2, "labels"), "l-2", "bedroom", "carol"),
        *(RatingChange("done", Fence(0, 3 + i, "labels"), f"r-{i}", who, 5) for i, who in enumerate(("x", "y"))),
        RatingChange("sure-kitchen", Fence(0, 9, "labels"), "r-9", f"ann-{tag}", 6),  # ann rated it already
    ]
    await GalleryStore(redis).apply(ns, [(hotel_id, c) for c in [*records, *labels]])
    await redis.zadd(keys.LABEL_SUSPECTS_KEY, {f"{hotel_id} suspect": 0.9})
    yield ns, hotel_id, tag
    await redis.zrem(keys.LABEL_SUSPECTS_KEY, f"{hotel_id} suspect")
    await drop_namespace(redis, ns)


async def serve(settings: Settings, redis):
    server = TestServer(create_app(settings, redis=redis), host="127.0.0.1")
    await server.start_server()
    return server


async def test_the_queue_puts_suspects_first_never_repeats_a_photo_and_stops_at_n_raters(redis, redis_url, hotel):
    ns, hotel_id, tag = hotel
    ann, bob = f"ann-{tag}", f"bob-{tag}"
    tokens = {who: await reviewers.add(redis, who, "reviewer") for who in (ann, bob)}
    server = await serve(Settings(redis_url=redis_url, namespace=ns, review_raters=2), redis)
    try:
        async with ClientSession(base_url=str(server.make_url(""))) as http:

            async def queue(who: str, limit: int) -> list[dict]:
                params = {"hotel": hotel_id, "limit": str(limit)}
                async with http.get(
                    "/review/queue", params=params, headers={"Authorization": f"Bearer {tokens[who]}"}
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    return (await resp.json())["items"]

            first = await queue(ann, 3)
            for item in first:
                print(f"{item['image_id']:13s} {item['score']:6.2f} {item['why']}")
            ids = [i["image_id"] for i in first]
            assert ids[0] == "suspect" and "suspected label error (0.90)" in first[0]["why"]
            assert set(ids[1:]) == {"unsure", "sure-bed"}  # low margin; the hero
            rest = [i["image_id"] for i in await queue(ann, 10)]
            # Never the same photo twice to ann; not the one she rated; "done" has a label and 2 ratings.
            assert not set(rest) & set(ids) and "sure-kitchen" not in rest and "done" not in rest
            assert rest[0] == "dup-kitchen"  # its near duplicate is tagged another area
            assert await queue(ann, 10) == []
            # Bob starts from the top: the queue is per person.
            assert [i["image_id"] for i in await queue(bob, 1)] == ["suspect"]
    finally:
        await server.close()
        await redis.hdel(keys.REVIEWERS_KEY, ann, bob)


async def test_a_trusted_proxy_header_counts_only_from_the_proxy_and_only_for_active_reviewers(redis, redis_url, hotel):
    ns, hotel_id, tag = hotel
    ed, gone = f"ed-{tag}", f"gone-{tag}"
    await reviewers.add(redis, ed, "editor")
    await reviewers.add(redis, gone, "reviewer")
    await reviewers.revoke(redis, gone)
    header = "X-Forwarded-User"
    try:
        for proxies, expected in (("127.0.0.0/8", {ed: 200, gone: 403, "nobody": 403}), ("10.9.0.0/16", {ed: 401})):
            s = Settings(
                redis_url=redis_url, namespace=ns, review_trusted_header=header, review_trusted_proxies=proxies
            )
            server = await serve(s, redis)
            try:
                async with ClientSession(base_url=str(server.make_url(""))) as http:
                    for who, status in expected.items():
                        async with http.get("/review/me", headers={header: who}) as resp:
                            assert resp.status == status, (proxies, who, await resp.text())
                            if status == 200:
                                assert (await resp.json()) == {"reviewer": ed, "role": "editor"}
            finally:
                await server.close()
        with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
            create_app(Settings(redis_url=redis_url, review_trusted_header=header), redis=redis)
    finally:
        await redis.hdel(keys.REVIEWERS_KEY, ed, gone)
