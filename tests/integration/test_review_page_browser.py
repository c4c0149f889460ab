"""The page's review mode in a real headless Chromium, against the real server, broker, scorer and Redis.

A reviewer pastes their token (kept in the tab's sessionStorage, sent as a header), corrects the
hero's area from the page: the label is published, the running scorer applies it, and the page
shows the corrected area and its reason. A reviewer sees no editor buttons; the token never
lands in a URL, a cookie or localStorage.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp.test_utils import TestServer

from galleryrank.consumer.api.serve import PathOnlyAccessLogger, create_app
from galleryrank.consumer.runtime import run_scorer
from galleryrank.consumer.state import keys, reviewers
from galleryrank.consumer.stream.kafka import create_topics
from galleryrank.consumer.stream.produce import publish, upserted
from galleryrank.consumer.stream.scorer import Hooks
from tests.helpers import drop_namespace
from tests.integration.test_gallery_page_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
async_api = pytest.importorskip("playwright.async_api", reason="playwright not installed (pip install -e .[test])")


async def test_a_reviewer_corrects_an_area_from_the_page(settings, model, redis, image_server, sample_jpegs, caplog):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install_browser.sh")
    caplog.set_level(logging.DEBUG)
    s = settings.model_copy(update={"labels_topic": f"{settings.topic}.labels"})
    tag = uuid.uuid4().hex[:6]
    hotel, who = f"h-page-{tag}", f"rita-{tag}"
    token = await reviewers.add(redis, who, "reviewer")
    await create_topics(s, partitions=2)
    names = sorted(sample_jpegs)[:3]
    await publish(s, [upserted(hotel, f"img-{i}", image_server.url(n)) for i, n in enumerate(names)])
    await run_scorer(s, model, redis=redis, until_caught_up=True, install_signal_handlers=False)
    before = orjson.loads(await redis.get(keys.gallery_key(s.namespace, hotel)))
    hero = before["images"][0]
    wrong = next(a for a in sorted(model.areas) if a != hero["area"])

    stop = asyncio.Event()

    async def stop_at(_scorer) -> bool:
        return stop.is_set()

    hooks = Hooks(stop_at=stop_at)
    scorer = asyncio.create_task(run_scorer(s, model, redis=redis, install_signal_handlers=False, control=hooks))
    server = TestServer(create_app(s, redis=redis, scoring_model=model), host="127.0.0.1")
    await server.start_server(access_log_class=PathOnlyAccessLogger, access_log=logging.getLogger("aiohttp.access"))
    problems: list[str] = []
    urls: list[str] = []
    try:
        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.on("request", lambda req: urls.append(req.url))
                await page.goto(str(server.make_url(f"/?namespace={s.namespace}&hotel={hotel}")))
                await page.wait_for_function(
                    "n => document.querySelectorAll('#gallery li.card').length === n", arg=len(before["images"])
                )
                await page.fill("#review-token", token)
                await page.click("#review-start")
                await page.wait_for_function("() => document.querySelectorAll('.review-panel').length === 3")
                assert await page.locator("#review-who").inner_text() == f"reviewing as {who} (reviewer)"
                assert await page.locator(".review-panel button.hide").count() == 0  # editors only
                first = page.locator("#gallery li.card").first
                assert await first.get_attribute("data-image-id") == hero["image_id"]
                await first.locator("select.label-area").select_option(wrong)
                await first.locator("button.set-area").click()
                # The page follows the gallery until the scorer applied the label.
                card = page.locator(f"#gallery li.card[data-image-id='{hero['image_id']}']")
                await page.wait_for_function(
                    "([id, area]) => { const li = document.querySelector(`#gallery li.card[data-image-id='${id}']`);"
                    " return li && li.dataset.area === area; }",
                    arg=[hero["image_id"], wrong],
                    timeout=30_000,
                )
                assert "area set by an editor" in (await card.get_attribute("data-reason"))
                assert f"model: {hero['area']}" in await card.locator(".model-area").inner_text()
                await page.screenshot(path=str(ARTIFACTS / "gallery-page-review.png"), full_page=True)
                stored = await page.evaluate(
                    "() => ({cookie: document.cookie, local: localStorage.length,"
                    " session: sessionStorage.getItem('galleryrank.reviewToken')})"
                )
                assert stored == {"cookie": "", "local": 0, "session": token}
            finally:
                await browser.close()
    finally:
        stop.set()
        await scorer
        await server.close()
        await redis.hdel(keys.REVIEWERS_KEY, who)
    doc = orjson.loads(await redis.get(keys.gallery_key(s.namespace, hotel)))
    entry = next(i for i in doc["images"] if i["image_id"] == hero["image_id"])
    assert entry["area"] == wrong and entry["model_area"] == hero["area"]
    await drop_namespace(redis, s.namespace)
    assert problems == []
    secret = token.rsplit(".", 1)[1]
    assert not [u for u in urls if secret in u] and secret not in caplog.text
    assert {urlsplit(u).hostname for u in urls} <= {"127.0.0.1"}
