"""MicroBatcher: Triton-style dynamic batching (pure logic, fake model)."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from galleryrank.consumer.stream.batcher import MicroBatcher

AREAS = ["bedroom", "pool"]


class FakeModel:
    """Scores each image by its first pixel, records batch sizes; can be held busy."""

    def __init__(self, fail_on: int | None = None):
        self.batches: list[int] = []
        self.release = threading.Event()
        self.release.set()
        self.fail_on = fail_on

    def __call__(self, batch: np.ndarray):
        self.release.wait(5)
        self.batches.append(len(batch))
        if self.fail_on is not None and self.fail_on in batch[:, 0, 0, 0]:
            raise RuntimeError("model broke on this batch")
        first = batch[:, 0, 0, 0].astype(np.float32)
        n = len(batch)
        return SimpleNamespace(
            aesthetic=first,
            aesthetic_dist=np.full((n, 10), 0.1, np.float32),
            area_probs=np.tile(np.array([[0.25, 0.75]], np.float32), (n, 1)),
            embedding=np.stack([np.full(4, v, np.float32) for v in first]),
        )


def image(value: int) -> np.ndarray:
    return np.full((3, 2, 2), value, np.uint8)


async def started(batcher: MicroBatcher) -> MicroBatcher:
    batcher.start()
    return batcher


async def test_lone_image_runs_at_once_without_waiting_for_company():
    model = FakeModel()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=32))
    try:
        t0 = time.perf_counter()
        scores = await batcher.score(image(7))
        assert time.perf_counter() - t0 < 0.5
        assert scores.aesthetic == 7.0
        assert scores.area_probs == {"bedroom": 0.25, "pool": 0.75}
        assert model.batches == [1]
    finally:
        await batcher.stop()


async def test_images_queued_while_model_is_busy_form_the_next_batch_capped_at_max():
    model = FakeModel()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=4))
    try:
        model.release.clear()  # the model is busy with the first image
        first = asyncio.create_task(batcher.score(image(0)))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.score(image(i))) for i in range(1, 10)]
        await asyncio.sleep(0.05)
        model.release.set()
        results = await asyncio.gather(first, *rest)
        assert model.batches == [1, 4, 4, 1]
        # Every caller gets its own image's scores, whatever batch it rode in.
        assert [r.aesthetic for r in results] == [float(i) for i in range(10)]
        assert [float(r.embedding[0]) for r in results] == [float(i) for i in range(10)]
    finally:
        await batcher.stop()


async def test_a_live_image_queued_behind_a_backfill_backlog_rides_the_next_batch():
    class Recording(FakeModel):
        def __init__(self) -> None:
            super().__init__()
            self.contents: list[list[int]] = []

        def __call__(self, batch: np.ndarray):
            out = super().__call__(batch)
            self.contents.append([int(v) for v in batch[:, 0, 0, 0]])
            return out

    model = Recording()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=4))
    try:
        model.release.clear()  # the model is busy with a first backfill image
        first = asyncio.create_task(batcher.score(image(0), priority=1))
        await asyncio.sleep(0.05)
        backlog = [asyncio.create_task(batcher.score(image(i), priority=1)) for i in range(1, 9)]
        await asyncio.sleep(0.01)
        live = asyncio.create_task(batcher.score(image(99), priority=0))  # arrives last
        await asyncio.sleep(0.05)
        model.release.set()
        await asyncio.gather(first, *backlog, live)
        # The live image leaves first; the backlog keeps its arrival order behind it.
        assert model.contents == [[0], [99, 1, 2, 3], [4, 5, 6, 7], [8]]
        assert live.result().aesthetic == 99.0
    finally:
        await batcher.stop()


async def test_max_delay_holds_a_partial_batch_for_late_arrivals():
    model = FakeModel()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=8, max_delay_s=0.3))
    try:

        async def late(i: int, after: float):
            await asyncio.sleep(after)
            return await batcher.score(image(i))

        t0 = time.perf_counter()
        await asyncio.gather(late(1, 0.0), late(2, 0.05), late(3, 0.1))
        elapsed = time.perf_counter() - t0
        assert model.batches == [3]  # the three arrived within the delay: one batch
        assert 0.25 <= elapsed < 2.0  # and the partial batch waited for the delay
    finally:
        await batcher.stop()


async def test_full_batch_does_not_wait_for_the_delay():
    model = FakeModel()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=3, max_delay_s=5.0))
    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(batcher.score(image(i)) for i in range(3)))
        assert time.perf_counter() - t0 < 2.0
        assert model.batches == [3]
    finally:
        await batcher.stop()


async def test_model_failure_fails_only_its_batch_and_the_batcher_keeps_going():
    model = FakeModel(fail_on=13)
    batcher = await started(MicroBatcher(model, AREAS, max_batch=8))
    try:
        with pytest.raises(RuntimeError, match="model broke"):
            await batcher.score(image(13))
        assert (await batcher.score(image(5))).aesthetic == 5.0
    finally:
        await batcher.stop()


async def test_cancelled_callers_are_not_scored():
    model = FakeModel()
    batcher = await started(MicroBatcher(model, AREAS, max_batch=8))
    try:
        model.release.clear()
        busy = asyncio.create_task(batcher.score(image(0)))
        await asyncio.sleep(0.05)
        gone = [asyncio.create_task(batcher.score(image(i))) for i in (1, 2)]
        kept = asyncio.create_task(batcher.score(image(3)))
        await asyncio.sleep(0.05)
        for task in gone:
            task.cancel()
        await asyncio.sleep(0)
        model.release.set()
        assert (await kept).aesthetic == 3.0
        await busy
        assert model.batches == [1, 1]  # the two cancelled images never reached the model
    finally:
        await batcher.stop()
