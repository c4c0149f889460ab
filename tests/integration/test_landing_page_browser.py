"""The gallery page's landing view in a real Chromium: with no ?hotel it lists the namespace's
hotels a page at a time (GET /hotels?q=&after=), "More hotels" loads the next page, a click
opens that hotel's gallery."""

from __future__ import annotations

import os
import uuid

import pytest
from aiohttp.test_utils import TestServer

from galleryrank.consumer.api.serve import create_app
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state import hotel_index
from tests.helpers import drop_namespace
from tests.integration.test_gallery_page_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]
async_api = pytest.importorskip("playwright.async_api", reason="playwright not installed (pip install -e .[test])")


async def test_landing_view_lists_every_hotel_page_by_page(redis, redis_url):
    ns = f"test-landing-{uuid.uuid4().hex[:6]}"
    hotels = sorted(f"h-{i:03d}" for i in range(57))  # more than one page (50)
    pipe = redis.pipeline(transaction=False)
    hotel_index.add(pipe, ns, hotels)
    await pipe.execute()
    server = TestServer(create_app(Settings(redis_url=redis_url), redis=redis), host="127.0.0.1")
    await server.start_server()
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(str(server.make_url(f"/?namespace={ns}")))
                links = page.locator("#hotel-list-items a")
                await page.wait_for_function("() => document.querySelectorAll('#hotel-list-items a').length === 50")
                assert await links.all_inner_texts() == hotels[:50]
                assert await page.locator("#hotel-list-more").is_visible()
                await page.click("#hotel-list-more")
                await page.wait_for_function("() => document.querySelectorAll('#hotel-list-items a').length === 57")
                assert await links.all_inner_texts() == hotels
                assert await page.locator("#hotel-list-more").is_hidden()
                # a link opens the hotel (no gallery document here: the page says so) and the list gives way
                await links.nth(56).click()
                await page.wait_for_function("() => document.getElementById('status').textContent.includes('h-056')")
                assert await page.locator("#hotel-list").is_hidden()
                assert "hotel=h-056" in page.url
                assert errors == []
            finally:
                await browser.close()
    finally:
        await server.close()
        await drop_namespace(redis, ns)
