"""The gallery page end to end in a real headless Chromium.

Real model scores of the sample photos -> real GalleryStore in real Redis ->
`galleryrank serve` on a real port -> Debian's chromium driven by Playwright:
search the hotel, see the photos in exactly the stored order with their area
labels, click one, see its CAM overlay. Screenshots land in artifacts/.

The browser comes from scripts/install_browser.sh (apt's `chromium`); never
`playwright install`, which downloads a browser build of its own.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestServer

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.images.decode import decode_image
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import GalleryStore
from tests.helpers import drop_namespace

CHROMIUM = os.environ.get("GALLERYRANK_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
# Flags for a locked-down CI box: no sandbox (root in a container), no GPU, and no
# traffic of Chromium's own (updates, sync, field trials) that would hang offline.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (apt-get install chromium)",
    ),
]
async_api = pytest.importorskip("playwright.async_api", reason="playwright not installed (pip install -e .[test])")


def scored_records(model, photos: dict[str, bytes], urls: dict[str, str]) -> list[ImageChange]:
    """What the scorer stores for these photos: the real decode and the real model."""
    names = sorted(photos)
    decoded = [decode_image(photos[n], model.input_size) for n in names]
    out = model.score(np.stack([d.pixels for d in decoded]))
    return [
        ImageChange(
            image_id=f"img-{Path(n).stem}",
            fence=Fence(0, i),
            event_id=f"e-{i}",
            url=urls[n],
            aesthetic=float(out.aesthetic[i]),
            aesthetic_dist=tuple(out.aesthetic_dist[i].tolist()),
            area_probs=dict(zip(model.areas, out.area_probs[i].tolist())),
            embedding=out.embedding[i],
            phash=decoded[i].phash,
            model_version=model.model_version,
        )
        for i, n in enumerate(names)
    ]


async def test_gallery_page_shows_redis_order_and_cam(redis, redis_url, image_server, sample_jpegs, model, tmp_path):
    tag = uuid.uuid4().hex[:6]
    ns = f"test-page-{tag}"
    hotel, other_hotel, unrelated_hotel = f"h-{tag}-grand", f"h-{tag}-budget", f"x-{tag}-motel"
    names = sorted(sample_jpegs)
    urls = {n: image_server.url(n) for n in names}
    store = GalleryStore(redis)
    await store.apply(ns, [(hotel, r) for r in scored_records(model, sample_jpegs, urls)])
    two = scored_records(model, {n: sample_jpegs[n] for n in names[:2]}, urls)
    for hid in (other_hotel, unrelated_hotel):
        await store.apply(ns, [(hid, r) for r in two])
    doc = orjson.loads(await redis.get(keys.gallery_key(ns, hotel)))
    assert len(doc["images"]) == len(names)

    settings = Settings(
        redis_url=redis_url,
        download_allow_networks="127.0.0.0/8",  # the image server
        device="cpu",
        model_cache_dir=str(tmp_path),
    )
    server = TestServer(create_app(settings, redis=redis, scoring_model=model), host="127.0.0.1")
    await server.start_server()
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    hosts: set[str] = set()
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
                page.on("request", lambda req: hosts.add(urlsplit(req.url).hostname or ""))
                await page.goto(str(server.make_url(f"/?namespace={ns}")))

                # Search: typing a prefix lists the hotels that start with it, sorted; pick the big one.
                await page.fill("#hotel-search", f"h-{tag}")
                await page.wait_for_function(
                    "want => JSON.stringify([...document.querySelectorAll('#suggestions li[data-hotel-id]')]"
                    ".map(li => li.textContent)) === want",
                    arg=orjson.dumps(sorted([hotel, other_hotel])).decode(),
                )
                await page.click(f"#suggestions li[data-hotel-id='{hotel}']")

                cards = page.locator("#gallery li.card")
                await page.wait_for_function(
                    "n => document.querySelectorAll('#gallery li.card').length === n", arg=len(doc["images"])
                )
                # Every photo really loaded in the browser (from the image URL in the document),
                # and is decoded, so that the screenshot shows it.
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#gallery img.thumb')]"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                await page.evaluate(
                    "() => Promise.all([...document.querySelectorAll('#gallery img.thumb')].map(i => i.decode()))"
                )
                shown = await cards.evaluate_all(
                    """lis => lis.map(li => ({
                        image_id: li.dataset.imageId, area: li.dataset.area,
                        label: li.querySelector('.area').textContent,
                        position: li.querySelector('.position').textContent,
                        aesthetic: li.querySelector('.aesthetic').textContent,
                        src: li.querySelector('img.thumb').src}))"""
                )
                # Exactly the Redis order, with each image's own URL, area and score.
                assert [s["image_id"] for s in shown] == [i["image_id"] for i in doc["images"]]
                for k, (s, img) in enumerate(zip(shown, doc["images"]), start=1):
                    assert s["position"] == f"#{k}"
                    assert s["src"] == img["url"]
                    assert s["area"] == img["area"] and s["label"] == img["area"].replace("_", " ")
                    assert s["aesthetic"].startswith(f"{img['aesthetic']:.2f}")
                assert await page.locator("#hotel-title").inner_text() == f"Hotel {hotel}"
                assert await page.locator("#suggestions").is_hidden()
                await page.screenshot(path=str(ARTIFACTS / "gallery-page.png"), full_page=True)

                # Clicking a photo opens its CAM overlay, computed by the server's model.
                second = doc["images"][1]
                await cards.nth(1).click()
                await page.wait_for_function(
                    "() => { const i = document.getElementById('cam-image');"
                    " return i.complete && i.naturalWidth > 0 && i.src.includes('/cam.png'); }"
                )
                cam_src = await page.locator("#cam-image").get_attribute("src")
                assert f"/hotels/{hotel}/images/{second['image_id']}/cam.png" in cam_src
                assert f"area={second['area']}" in cam_src
                assert await page.locator("#cam-dialog").is_visible()
                await page.screenshot(path=str(ARTIFACTS / "gallery-page-cam.png"))

                # An unknown hotel says so instead of showing a stale gallery.
                await page.keyboard.press("Escape")
                await page.fill("#hotel-search", f"h-{tag}-nope")
                await page.press("#hotel-search", "Enter")
                await page.wait_for_function("() => document.getElementById('status').classList.contains('error')")
                assert await cards.count() == 0
            finally:
                await browser.close()
    finally:
        await server.close()
        await drop_namespace(redis, ns)

    # The page's only console error is the 404 of the unknown hotel's gallery.
    assert [p for p in problems if "404" not in p] == []
    assert hosts <= {"127.0.0.1"}, f"the page fetched from other hosts: {hosts}"
    assert (ARTIFACTS / "gallery-page.png").stat().st_size > 10_000
