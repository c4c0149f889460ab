"""`galleryrank demo` as a new user runs it: the real CLI in a subprocess, the page in Chromium.

- `demo --serve`: the URL it prints opens a landing page that lists the hotels (paged API),
  a hotel's gallery shows, and Ctrl-C (SIGINT) ends the demo and every process it started.
- `demo --images DIR/<area>/*.jpg` with same-named files and one truncated JPEG: every photo
  keyed apart, the label shown, the broken one reported by file name with its reason, exit 0.
- `demo --images DIR` flat; on an external $REDIS_URL the demo deletes only what it wrote.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis as redis_sync

from tests.integration.test_gallery_page_browser import CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
URL_RE = re.compile(r"gallery page: (http://\S+)")


def demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL" and not k.startswith("GALLERYRANK_")}
    env.update(COLUMNS="200", **extra)
    return env


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "galleryrank", "demo", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env or demo_env(),
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_jpegs) -> Path:
    """DIR/<area>/houseNNN.jpg with the same file names in both areas, plus one truncated JPEG."""
    root = tmp_path_factory.mktemp("photos")
    names = sorted(sample_jpegs)
    for i, name in enumerate(names[:6]):
        area = root / ("bathroom" if i % 2 else "kitchen")
        area.mkdir(exist_ok=True)
        (area / f"house{i // 2:03d}.jpg").write_bytes(sample_jpegs[name])
    body = sample_jpegs[names[6]]
    (root / "kitchen" / "broken.jpg").write_bytes(body[: len(body) // 3])
    return root


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
async def test_demo_serve_lists_hotels_shows_a_gallery_and_ctrl_c_ends_everything():
    async_api = pytest.importorskip("playwright.async_api")
    proc = subprocess.Popen(
        [sys.executable, "-m", "galleryrank", "demo", "--serve", "--serve-port", "0", "--hotels", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(),
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        url = None
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = URL_RE.search(line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        assert url.endswith("?hotel=h-1000")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the demo runs its broker and Redis as child processes"
        base = url.split("?", 1)[0]

        import aiohttp

        async with aiohttp.ClientSession() as http:  # the landing list's API, a page at a time
            first = await (await http.get(f"{base}hotels", params={"q": "", "limit": "2"})).json()
            assert first["hotels"] == ["h-1000", "h-1001"] and first["next"] == "h-1001"
            rest = await (await http.get(f"{base}hotels", params={"q": "", "limit": "2", "after": "h-1001"})).json()
            assert rest["hotels"] == ["h-1002"] and rest["truncated"] is False

        async with async_api.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(base)
                await page.wait_for_function("() => document.querySelectorAll('#hotel-list-items a').length === 3")
                listed = await page.locator("#hotel-list-items a").all_inner_texts()
                assert listed == ["h-1000", "h-1001", "h-1002"]
                await page.click("#hotel-list-items a >> text=h-1001")
                await page.wait_for_function("() => document.querySelectorAll('#gallery li.card').length > 0")
                assert await page.locator("#hotel-title").inner_text() == "Hotel h-1001"
                assert await page.locator("#hotel-list").is_hidden()
                await page.wait_for_function(
                    "() => [...document.querySelectorAll('#gallery img.thumb')].every(i => i.complete && i.naturalWidth > 0)"
                )
                assert errors == []
            finally:
                await browser.close()

        proc.send_signal(signal.SIGINT)  # Ctrl-C
        rest_out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + rest_out
        gone = psutil.wait_procs(children, timeout=10)[1]
        assert gone == [], f"still running after Ctrl-C: {[c.pid for c in gone]}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_with_area_folders_keeps_names_apart_and_names_the_dead_lettered_photo(photos):
    out = run_demo("--images", str(photos), "--hotels", "2", "--per-hotel", "7")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "your label" in text
    assert "kitchen/house000.jpg" in text and "bathroom/house000.jpg" in text  # same name, two photos
    dead = [line for line in text.splitlines() if line.startswith("DLQ ")]
    # the broken photo in each hotel that shows it, by file name and reason; the two scripted ones
    assert any("kitchen/broken.jpg: truncated_image" in line for line in dead), text
    assert any("demo-missing: http_404" in line for line in dead)
    assert any("not JSON: invalid_json" in line for line in dead)
    assert "demo finished" in text and "unexpected counts" not in text
    assert "Traceback" not in out.stderr


def test_demo_flat_folder_on_an_external_redis_deletes_only_what_it_wrote(tmp_path, sample_jpegs, redis_url):
    for name in sorted(sample_jpegs)[:4]:
        (tmp_path / name).write_bytes(sample_jpegs[name])
    client = redis_sync.Redis.from_url(redis_url)
    mine = f"galleryrank:demo:{uuid.uuid4().hex}"  # someone's data in the namespace the old demo wiped
    client.set(mine, b"keep me")
    try:
        before = set(client.scan_iter(match="galleryrank:demo-*", count=1000))
        out = run_demo("--images", str(tmp_path), "--hotels", "1", env=demo_env(REDIS_URL=redis_url))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "demo finished" in out.stdout
        assert client.get(mine) == b"keep me"
        assert set(client.scan_iter(match="galleryrank:demo-*", count=1000)) == before  # its own namespace: gone
        # A namespace that already holds data is refused, and kept.
        taken = run_demo("--namespace", "demo", "--hotels", "1", env=demo_env(REDIS_URL=redis_url))
        assert taken.returncode == 2 and "already holds data" in taken.stdout
        assert client.get(mine) == b"keep me"
    finally:
        client.delete(mine)
        client.close()


def test_demo_images_without_photos_is_one_line_exit_2(tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    out = run_demo("--images", str(tmp_path))
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "DIR/<area>/*.jpg" in out.stderr
    assert "Traceback" not in out.stderr
