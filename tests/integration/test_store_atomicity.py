"""A reader never sees a half-applied hotel update (real Redis).

The writer applies many micro-batches (upserts and deletes) to a few hotels
while readers poll. Each read takes the gallery document, the image hash and
the version in one MULTI/EXEC, i.e. one consistent snapshot; in every
snapshot the document must list exactly the live images of the hash, in the
ranked order of that state. A non-atomic write (hash first, document later)
would be caught here.
"""

from __future__ import annotations

import asyncio
import random

import numpy as np
import orjson
import pytest

from galleryrank.consumer.state import keys
from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.records import Fence, ImageChange, decode_record
from galleryrank.consumer.state.store import GalleryStore
from galleryrank.ranking.types import RankingConfig
from tests.helpers import drop_namespace

pytestmark = pytest.mark.integration

AREAS = ["bedroom", "bathroom", "facade", "swimming_pool", "other"]


def _record(rng: random.Random, image_id: str, offset: int, deleted: bool = False) -> ImageChange:
    if deleted:
        return ImageChange(image_id, Fence(0, offset), f"e{offset}", deleted=True)
    probs = np.array([rng.random() for _ in AREAS])
    probs /= probs.sum()
    emb = np.array([rng.gauss(0, 1) for _ in range(16)], np.float32)
    return ImageChange(
        image_id,
        Fence(0, offset),
        f"e{offset}",
        url=f"http://img/{image_id}",
        aesthetic=rng.uniform(2, 9),
        aesthetic_dist=tuple([0.1] * 10),
        area_probs=dict(zip(AREAS, probs.tolist())),
        embedding=emb / np.linalg.norm(emb),
        phash=rng.getrandbits(64),
        model_version="m",
    )


async def test_concurrent_readers_only_see_whole_gallery_updates(redis, settings):
    ns, hotels = settings.namespace, ["atom-a", "atom-b", "atom-c"]
    store = GalleryStore(redis)
    rng = random.Random(5)
    stop = asyncio.Event()
    snapshots = 0
    problems: list[str] = []

    async def reader():
        nonlocal snapshots
        while not stop.is_set():
            hid = rng.choice(hotels)
            pipe = redis.pipeline(transaction=True)
            pipe.get(keys.gallery_key(ns, hid))
            pipe.hgetall(keys.images_key(ns, hid))
            doc_raw, fields = await pipe.execute()
            if doc_raw is None:
                await asyncio.sleep(0)
                continue
            records = [decode_record(k.decode(), v) for k, v in fields.items()]
            doc_ids = [i["image_id"] for i in orjson.loads(doc_raw)["images"]]
            expected = HotelState.from_records(hid, records, RankingConfig()).ranked()[0]
            if doc_ids != expected:
                problems.append(f"{hid}: doc {doc_ids[:5]}... != state {expected[:5]}...")
            snapshots += 1

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        offset = 0
        for _ in range(60):
            batch = []
            for _ in range(rng.randint(1, 12)):
                offset += 1
                hid = rng.choice(hotels)
                image = f"img-{rng.randint(0, 40)}"
                batch.append((hid, _record(rng, image, offset, deleted=rng.random() < 0.2)))
            await store.apply(ns, batch)
            await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await drop_namespace(redis, ns)
    assert snapshots > 50, "readers barely ran; the test proved nothing"
    assert problems == []
