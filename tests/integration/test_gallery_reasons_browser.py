"""The gallery page shows why each photo has its position, in a real headless Chromium.

Real model scores -> real GalleryStore in real Redis, with an editor's pin and
hide applied through the store -> `galleryrank serve` on a real port -> Debian's
chromium via Playwright: every card carries the document's reason, the reason
shows on hover and on a tap of "why?" (touch screens), a tap does not open the
CAM, the hidden photo is absent and the pinned id that has no photo is named.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestServer

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import keys
from galleryrank.consumer.state.overrides import HideChange, PinChange
from galleryrank.consumer.state.records import Fence
from galleryrank.consumer.state.store import GalleryStore
from tests.helpers import drop_namespace
from tests.integration.test_gallery_page_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, scored_records

pytestmark = pytest.mark.integration
async_api = pytest.importorskip("playwright.async_api", reason="playwright not installed (pip install -e .[test])")


async def test_page_shows_each_position_reason_on_hover_and_tap(redis, redis_url, image_server, sample_jpegs, model):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh (apt-get install chromium)")
    tag = uuid.uuid4().hex[:6]
    ns, hotel = f"test-reasons-{tag}", f"h-{tag}-editor"
    names = sorted(sample_jpegs)
    urls = {n: image_server.url(n) for n in names}
    store = GalleryStore(redis)
    records = scored_records(model, sample_jpegs, urls)
    await store.apply(ns, [(hotel, r) for r in records])
    automatic = orjson.loads(await redis.get(keys.gallery_key(ns, hotel)))
    order = [i["image_id"] for i in automatic["images"]]
    pin, hide = order[-1], order[0]  # pin the last photo, hide the hero
    offset = len(records)
    await store.apply(
        ns,
        [
            (hotel, PinChange(Fence(0, offset), "e-pin", (pin, "img-gone"), replace=True)),
            (hotel, HideChange(hide, Fence(0, offset + 1), "e-hide", hidden=True)),
        ],
    )
    doc = orjson.loads(await redis.get(keys.gallery_key(ns, hotel)))
    assert doc["images"][0]["image_id"] == pin and hide not in [i["image_id"] for i in doc["images"]]
    assert doc["pinned_missing"] == ["img-gone"]

    settings = Settings(redis_url=redis_url, download_allow_networks="127.0.0.0/8", device="cpu")
    server = TestServer(create_app(settings, redis=redis, scoring_model=model), host="127.0.0.1")
    await server.start_server()
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    failed: list[str] = []
    hosts: set[str] = set()
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # A phone-sized touch screen: no hover there, the reason comes with a tap.
                context = await browser.new_context(viewport={"width": 1280, "height": 900}, has_touch=True)
                page = await context.new_page()
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
                page.on("response", lambda r: r.status >= 400 and failed.append(urlsplit(r.url).path))
                page.on("request", lambda req: hosts.add(urlsplit(req.url).hostname or ""))
                await page.goto(str(server.make_url(f"/?namespace={ns}&hotel={hotel}")))
                cards = page.locator("#gallery li.card")
                await page.wait_for_function(
                    "n => document.querySelectorAll('#gallery li.card').length === n", arg=len(doc["images"])
                )
                shown = await cards.evaluate_all(
                    """lis => lis.map(li => ({id: li.dataset.imageId, reason: li.dataset.reason,
                        text: li.querySelector('.reason').textContent, pinned: li.classList.contains('pinned'),
                        title: li.title}))"""
                )
                # Every card has the document's reason; the order is the document's.
                assert [(s["id"], s["reason"]) for s in shown] == [(i["image_id"], i["reason"]) for i in doc["images"]]
                assert all(s["text"] == s["reason"] for s in shown)
                assert shown[0]["pinned"] and not any(s["pinned"] for s in shown[1:])
                assert all(s["reason"] in s["title"] for s in shown)
                assert "pinned but not shown: img-gone" in await page.locator("#hotel-meta").inner_text()

                # Hidden until asked: hover shows the reason of that card only.
                third = cards.nth(2)
                assert not await third.locator(".reason").is_visible()
                await third.hover()
                assert await third.locator(".reason").is_visible()
                assert await third.locator(".reason").inner_text() == doc["images"][2]["reason"]
                assert not await cards.nth(1).locator(".reason").is_visible()
                await page.screenshot(path=str(ARTIFACTS / "gallery-reasons-hover.png"))

                # Touch: tapping "why?" shows it and does not open the CAM dialog.
                await page.mouse.move(0, 0)
                second = cards.nth(1)
                await second.locator(".why").tap()
                assert await second.locator(".reason").is_visible()
                assert await second.locator(".why").get_attribute("aria-expanded") == "true"
                assert not await page.locator("#cam-dialog").is_visible()
                await page.screenshot(path=str(ARTIFACTS / "gallery-reasons-tap.png"))
                await second.locator(".why").tap()
                assert await second.get_attribute("class") == "card"
            finally:
                await browser.close()
    finally:
        await server.close()
        await drop_namespace(redis, ns)
    # Every request of the page succeeded; Chromium's own /favicon.ico request (not a page
    # request) is the one 404 it logs to the console.
    assert failed == []
    assert [p for p in problems if "404" not in p] == [] and len(problems) <= 1
    assert hosts <= {"127.0.0.1"}, f"the page fetched from other hosts: {hosts}"
