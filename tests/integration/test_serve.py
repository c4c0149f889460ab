"""The read API (`galleryrank serve`) on a real aiohttp server against real Redis.

Galleries are written by the real store (GalleryStore.apply); the API must hand
them out byte for byte. The CAM endpoint runs the real model on a photo served
over real loopback HTTP.
"""

from __future__ import annotations

import asyncio
import io
import re
import uuid

import numpy as np
import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.dev.embedded import EmbeddedRedis
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import hotel_index, keys
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from tests.helpers import drop_namespace

pytestmark = pytest.mark.integration

AREAS = ("bathroom", "bedroom", "facade", "swimming_pool")


def records(urls: list[str], seed: int = 0) -> list[ImageChange]:
    """Scored records with distinct areas and aesthetics (what the scorer would store)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, url in enumerate(urls):
        probs = np.full(len(AREAS), 0.1 / (len(AREAS) - 1))
        probs[i % len(AREAS)] = 0.9
        emb = rng.normal(size=16).astype(np.float32)
        dist = np.zeros(10)
        dist[3 + i % 5] = 1.0
        out.append(
            ImageChange(
                image_id=f"img-{i}",
                fence=Fence(0, i),
                event_id=f"e-{i}",
                url=url,
                aesthetic=float(dist @ np.arange(1, 11)),
                aesthetic_dist=tuple(dist),
                area_probs=dict(zip(AREAS, probs.tolist())),
                embedding=emb / np.linalg.norm(emb),
                model_version="test-model",
            )
        )
    return out


async def put_gallery(redis, namespace: str, hotel_id: str, urls: list[str], seed: int = 0) -> bytes:
    await GalleryStore(redis).apply(namespace, [(hotel_id, r) for r in records(urls, seed)])
    return await redis.get(keys.gallery_key(namespace, hotel_id))


@pytest.fixture
def ns() -> str:
    return f"test-serve-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def settings(redis_url, tmp_path) -> Settings:
    """The API needs no Kafka; the namespace is left unset so that requests choose it."""
    return Settings(
        redis_url=redis_url,
        namespace=None,
        download_allow_networks="127.0.0.0/8",  # image server
        download_timeout_s=3.0,
        download_retries=0,
        device="cpu",
        model_cache_dir=str(tmp_path),
    )


@pytest_asyncio.fixture
async def client(settings, redis, ns, model):
    app = create_app(settings, redis=redis, scoring_model=model)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c
    await drop_namespace(redis, ns)


async def test_gallery_is_returned_byte_identical(client, redis, ns):
    stored = await put_gallery(redis, ns, "h-1", [f"https://cdn.example.com/h-1/{i}.jpg" for i in range(6)])
    resp = await client.get("/hotels/h-1/gallery", params={"namespace": ns})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert resp.headers["X-Galleryrank-Namespace"] == ns
    body = await resp.read()
    assert body == stored  # the contract: exactly what Redis holds
    assert [i["image_id"] for i in orjson.loads(body)["images"]] != []


async def test_missing_gallery_is_a_404_json_error(client, ns):
    resp = await client.get("/hotels/no-such-hotel/gallery", params={"namespace": ns})
    assert resp.status == 404
    body = await resp.json()
    assert body["error"] == "not_found" and "no-such-hotel" in body["detail"]


async def test_bad_namespace_is_refused(client):
    resp = await client.get("/hotels/h-1/gallery", params={"namespace": "live:*"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "bad_namespace"


async def test_search_is_prefix_sorted_and_capped(client, redis, ns):
    ids = ["h-10", "h-2", "h-1", "x-1", "h*", "h-11"]
    pipe = redis.pipeline(transaction=False)
    hotel_index.add(pipe, ns, ids)  # what the store does on every write
    await pipe.execute()
    assert await redis.type(keys.hotels_key(ns)) == b"zset"
    resp = await client.get("/hotels", params={"q": "h-1", "namespace": ns})
    assert await resp.json() == {"namespace": ns, "hotels": ["h-1", "h-10", "h-11"], "truncated": False}
    # Glob characters in the prefix match literally.
    resp = await client.get("/hotels", params={"q": "h*", "namespace": ns})
    assert (await resp.json())["hotels"] == ["h*"]
    resp = await client.get("/hotels", params={"q": "", "limit": "2", "namespace": ns})
    assert await resp.json() == {"namespace": ns, "hotels": ["h*", "h-1"], "truncated": True, "next": "h-1"}
    resp = await client.get("/hotels", params={"q": "h-1", "limit": "2", "namespace": ns})
    assert await resp.json() == {"namespace": ns, "hotels": ["h-1", "h-10"], "truncated": True, "next": "h-10"}
    # Paging (the landing list): ?after= the previous page's `next`, until a page is not truncated.
    pages, after = [], ""
    while True:
        body = await (
            await client.get("/hotels", params={"q": "", "limit": "2", "after": after, "namespace": ns})
        ).json()
        pages.append(body["hotels"])
        if not body["truncated"]:
            break
        after = body["next"]
    assert pages == [["h*", "h-1"], ["h-10", "h-11"], ["h-2", "x-1"]]
    resp = await client.get("/hotels", params={"q": "h-1", "after": "h-10", "namespace": ns})
    assert (await resp.json())["hotels"] == ["h-11"]


async def test_an_old_set_index_stays_readable_and_converts_on_the_next_write(client, redis, ns):
    """Namespaces written before the sorted set hold a plain SET: read as it is, converted by the writer."""
    await redis.sadd(keys.hotels_key(ns), "h-1", "h-10", "x-1", "hôtel")
    resp = await client.get("/hotels", params={"q": "h-1", "namespace": ns})
    assert await resp.json() == {"namespace": ns, "hotels": ["h-1", "h-10"], "truncated": False}
    assert await hotel_index.count(redis, ns) == 4
    await put_gallery(redis, ns, "h-2", ["https://cdn.example.com/h-2/0.jpg"])  # the store's write converts it
    assert await redis.type(keys.hotels_key(ns)) == b"zset"
    assert await hotel_index.members(redis, ns) == ["h-1", "h-10", "h-2", "hôtel", "x-1"]
    resp = await client.get("/hotels", params={"q": "h", "namespace": ns})
    assert (await resp.json())["hotels"] == ["h-1", "h-10", "h-2", "hôtel"]


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/hotels/h-1%0A/gallery", "bad_hotel_id"),  # "h-1\n": a `$` regex would take it
        ("/hotels/h%E2%80%8B1/gallery", "bad_hotel_id"),  # zero-width space
        ("/hotels/h%E2%80%AE1/gallery", "bad_hotel_id"),  # right-to-left override
        ("/hotels/h-1/images/i%0A/cam.png", "bad_image_id"),
    ],
)
async def test_ids_in_paths_are_checked_like_events(client, ns, path, error):
    resp = await client.get(path, params={"namespace": ns})
    assert resp.status == 400
    assert (await resp.json())["error"] == error


async def test_namespace_with_a_trailing_newline_is_refused(client):
    resp = await client.get("/hotels", params={"q": "h", "namespace": "live\n"})
    assert resp.status == 400 and (await resp.json())["error"] == "bad_namespace"


async def test_healthz_and_page_and_static(client):
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    html = await page.text()
    assert 'id="hotel-search"' in html and "/static/app.js" in html
    # Everything the page needs is served locally (no CDN).
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in ("/static/app.js", "/static/style.css"):
        resp = await client.get(asset)
        assert resp.status == 200 and len(await resp.read()) > 500


async def test_cam_overlay_of_a_gallery_image(client, redis, ns, image_server, sample_jpegs, model):
    names = sorted(sample_jpegs)[:2]
    stored = orjson.loads(await put_gallery(redis, ns, "h-cam", [image_server.url(n) for n in names]))
    first = stored["images"][0]
    resp = await client.get(f"/hotels/h-cam/images/{first['image_id']}/cam.png", params={"namespace": ns})
    assert resp.status == 200 and resp.content_type == "image/png"
    cam = Image.open(io.BytesIO(await resp.read()))
    original = Image.open(io.BytesIO(sample_jpegs[first["url"].rsplit("/", 1)[1]]))
    # Same aspect as the photo (the overlay is drawn on the photo, at most 768 px a side).
    assert max(cam.size) == min(768, max(original.size))
    assert abs(cam.size[0] / cam.size[1] - original.size[0] / original.size[1]) < 0.02
    assert resp.headers["X-Cam-Area"] in model.areas
    assert 0.0 < float(resp.headers["X-Cam-Probability"]) <= 1.0

    # An explicit area draws that area's map; the picture differs from the predicted one.
    other = next(a for a in model.areas if a != resp.headers["X-Cam-Area"])
    resp2 = await client.get(
        f"/hotels/h-cam/images/{first['image_id']}/cam.png", params={"namespace": ns, "area": other}
    )
    assert resp2.status == 200 and resp2.headers["X-Cam-Area"] == other
    assert await resp2.read() != await resp.read()

    bad = await client.get(
        f"/hotels/h-cam/images/{first['image_id']}/cam.png", params={"namespace": ns, "area": "moon_base"}
    )
    assert bad.status == 400 and (await bad.json())["error"] == "bad_area"
    missing = await client.get("/hotels/h-cam/images/img-404/cam.png", params={"namespace": ns})
    assert missing.status == 404


async def test_cam_of_an_unreachable_image_is_a_502(client, redis, ns, image_server):
    await put_gallery(redis, ns, "h-gone", [image_server.url("not-there.jpg")])
    resp = await client.get("/hotels/h-gone/images/img-0/cam.png", params={"namespace": ns})
    assert resp.status == 502
    assert (await resp.json())["error"] == "download_failed"


async def test_cam_overlays_are_cached_shared_and_capped(client, redis, ns, image_server, sample_jpegs, monkeypatch):
    """40 concurrent requests for one overlay: one download + render; then from the cache.
    Distinct overlays beyond the waiting cap are turned away (503 + Retry-After), not queued."""
    from galleryrank.consumer.api import serve

    names = sorted(sample_jpegs)[:6]
    stored = orjson.loads(await put_gallery(redis, ns, "h-load", [image_server.url(n) for n in names]))
    cam = client.server.app[serve.CAM_KEY]
    first = stored["images"][0]["image_id"]
    url = f"/hotels/h-load/images/{first}/cam.png"
    responses = await asyncio.gather(*(client.get(url, params={"namespace": ns}) for _ in range(40)))
    bodies = {await r.read() for r in responses}
    assert [r.status for r in responses] == [200] * 40 and len(bodies) == 1
    assert cam.renders == 1, "one render shared by 40 requests"
    again = await client.get(url, params={"namespace": ns})
    assert again.status == 200 and await again.read() in bodies and cam.renders == 1, "served from the cache"

    monkeypatch.setattr(serve, "CAM_MAX_WAITING", 1)
    others = [i["image_id"] for i in stored["images"][1:]]
    responses = await asyncio.gather(
        *(client.get(f"/hotels/h-load/images/{i}/cam.png", params={"namespace": ns}) for i in others)
    )
    statuses = sorted(r.status for r in responses)
    assert 503 in statuses and 200 in statuses, statuses
    busy = next(r for r in responses if r.status == 503)
    assert busy.headers["Retry-After"] == "1" and (await busy.json())["error"] == "busy"


# --------------------------------------------------------------------------- #
# Namespace selection touches galleryrank:active, a global key: on a private
# redis-server so that it cannot disturb anything else using the shared one.
# --------------------------------------------------------------------------- #
@pytest_asyncio.fixture
async def private_redis(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)  # EmbeddedRedis would reuse it
    server = EmbeddedRedis().start()
    client = aioredis.Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        server.stop()


async def test_namespace_selection(settings, private_redis):
    r = private_redis
    live = await put_gallery(r, "live", "h-ns", ["https://cdn.example.com/a.jpg"], seed=1)
    blue = await put_gallery(
        r, "blue", "h-ns", ["https://cdn.example.com/b.jpg", "https://cdn.example.com/c.jpg"], seed=2
    )
    green = await put_gallery(r, "green", "h-ns", ["https://cdn.example.com/d.jpg"], seed=3)
    assert len({live, blue, green}) == 3

    async def fetch(app_namespace: str | None, **params) -> bytes:
        app = create_app(settings.model_copy(update={"namespace": app_namespace}), redis=r)
        async with TestClient(TestServer(app, host="127.0.0.1")) as c:
            resp = await c.get("/hotels/h-ns/gallery", params=params)
            assert resp.status == 200
            return await resp.read()

    assert await fetch(None) == live  # no galleryrank:active -> live
    await r.set(keys.ACTIVE_KEY, "blue")
    assert await fetch(None) == blue  # follows the active namespace
    assert await fetch(None, namespace="green") == green  # ?namespace= wins
    assert await fetch("green") == green  # settings.namespace pins it
    assert await fetch("green", namespace="live") == live  # ... but the query still wins
