"""The decode worker pool: a CPU-time budget that kills, a byte budget, the container's CPU count.

Real worker processes decode real (generated) images; nothing is faked but the
cgroup files, which are written to a temporary folder.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from galleryrank.consumer.images import decode
from galleryrank.consumer.images.decode import DecodeError, check_jpeg_scans, decode_cost_bytes, probe
from galleryrank.consumer.images.decode_pool import ByteBudget, DecodePool, _cgroup_quota, available_cpus
from tests.hostile_images import at_cap_images, case, progressive_scan_bomb, uniform_png


async def test_a_decode_over_its_cpu_budget_is_killed_and_the_pool_goes_on():
    bomb = progressive_scan_bomb(4096, 2_000)  # ~11 s of CPU in libjpeg, 178 KB
    pool = DecodePool(2, cpu_budget_s=1.0, max_scans=10**6)  # let the bomb past the marker check
    try:
        results = await asyncio.gather(
            pool.decode(bomb, 224), pool.decode(case("jpeg_rgb").data, 224), return_exceptions=True
        )
        # Left alone the bomb decodes fine after ~11 s of CPU: decode_timeout means it was stopped.
        assert isinstance(results[0], DecodeError) and results[0].reason == "decode_timeout", results[0]
        assert results[1].pixels.shape == (3, 224, 224), "the other worker decoded meanwhile"
        assert pool.killed == 1 and pool.busy() == 0
        again = await pool.decode(case("png_rgb").data, 224)  # a fresh worker replaced the killed one
        assert again.width == 320
    finally:
        pool.close()


async def test_the_scan_check_refuses_the_bomb_before_any_decode():
    bomb = progressive_scan_bomb(2048, 5_000)
    with pytest.raises(DecodeError) as info:
        check_jpeg_scans(bomb)
    assert info.value.reason == "too_many_scans"
    assert check_jpeg_scans(case("jpeg_progressive").data) == 10  # libjpeg's default script
    assert check_jpeg_scans(case("jpeg_rgb").data) == 1


async def test_close_kills_a_busy_worker_at_once():
    pool = DecodePool(1, cpu_budget_s=60.0, max_scans=10**6)
    task = asyncio.ensure_future(pool.decode(progressive_scan_bomb(4096, 2_000), 224))
    while pool.busy() == 0:
        await asyncio.sleep(0.05)
    pool.close()
    # Abandoned, not failed (the scorer redoes the record); waited for, it would have decoded
    # successfully after ~11 s of CPU.
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 30)


def test_decode_cost_is_estimated_in_bytes_for_every_mode():
    import io

    from PIL import Image

    side = 7_000
    costs = {}
    for name, data in at_cap_images().items():
        with Image.open(io.BytesIO(data)) as img:
            costs[name] = decode_cost_bytes(img) >> 20
    # Pillow's storage per pixel (1, 2 or 4 bytes) plus the strip working set; progressive
    # JPEG: libjpeg's full-size coefficients (6 bytes per pixel at 4:4:4).
    assert costs["png_p"] < costs["png_i16"] < costs["png_rgba"] <= costs["png_rgb"] + 8
    assert 180 < costs["png_rgba"] < 220 and 270 < costs["jpeg_progressive_rgb"] < 320, costs
    # Over the budget: refused from the header, before a pixel is decoded.
    with pytest.raises(DecodeError) as info:
        probe(uniform_png(side, side, "RGBA"), max_bytes=64 << 20)
    assert info.value.reason == "too_many_pixels" and "MB to decode" in info.value.detail


def test_strip_conversion_gives_the_whole_image_conversion():
    """RGBA/LA/P+tRNS/16-bit at 4000x3000 (reduced x6): the strips reproduce whole-image
    convert + composite + reduce exactly."""
    import io

    import numpy as np
    from PIL import Image

    for mode in ("RGBA", "LA", "P", "I;16"):
        data = uniform_png(4000, 3000, mode)
        img = Image.open(io.BytesIO(data))
        img.load()
        whole = decode.to_rgb(img).reduce(decode._reduce_factor(img, 224))
        strips = decode._convert_and_reduce(img, 224)
        assert strips.size == whole.size
        assert np.array_equal(np.asarray(strips), np.asarray(whole)), mode


def test_byte_budget_makes_big_decodes_wait_for_room():
    budget = ByteBudget(100)
    order: list[str] = []
    with budget.hold(70):

        def second():
            with budget.hold(60):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first done")
    t.join(2)
    assert order == ["first done", "second"]
    with budget.hold(10**9):  # more than the whole budget: capped, never a deadlock
        assert budget.held == 100


def test_cpu_count_follows_the_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_quota(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert _cgroup_quota(str(v1)) == 2.0
    import os

    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


async def test_a_long_decode_shows_in_readiness_and_metrics():
    from types import SimpleNamespace

    from galleryrank.consumer.health import ServiceStatus
    from galleryrank.consumer.metrics import REGISTRY

    pool = DecodePool(1, cpu_budget_s=60.0, max_scans=10**6)
    status = ServiceStatus()
    status.ok("model")
    scorer = SimpleNamespace(progress=lambda: SimpleNamespace(ready=True, last_loop_at=time.monotonic()))
    status.attach(scorer, pool, decode_budget_s=1.0)
    assert status.readiness() == {}
    task = asyncio.ensure_future(pool.decode(progressive_scan_bomb(4096, 2_000), 224))
    try:
        await asyncio.sleep(2.5)
        waiting = status.readiness()
        assert "decode" in waiting and "CPU budget 1 s" in waiting["decode"], waiting
        assert REGISTRY.get_sample_value("galleryrank_stage_oldest_seconds", {"stage": "decode"}) > 1.0
        assert REGISTRY.get_sample_value("galleryrank_decode_workers_busy") == 1.0
    finally:
        pool.close()
        task.cancel()
