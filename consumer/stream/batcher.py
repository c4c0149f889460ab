"""Dynamic micro-batching in front of the model, as Triton's dynamic batcher.

One worker task owns the model. When it is free it takes everything queued,
up to `max_batch`, and runs it at once; while that batch runs on the model
thread, new images queue up and form the next batch. So under load batches
grow by themselves, and a lone image never waits for company — unless
`max_delay_s` > 0 asks the worker to hold a non-full batch that long.

Queued images leave in priority order, then arrival order: a live upload that arrives
behind a backlog of backfill images (stream/priority.py lets up to
`backfill_max_in_flight` of them in while live is idle) goes into the next batch, not the
one after the backlog.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import metrics
from ..tasks import cancel_and_wait

if TYPE_CHECKING:
    from galleryrank.models.scoring import ScoreOutput


def _stack(pixels: list[Any]) -> Any:
    """numpy pixels -> one numpy batch; device tensors (the hardware decode path) -> one device batch."""
    if isinstance(pixels[0], np.ndarray):
        return np.stack(pixels)
    import torch  # only a GPU decode path hands over tensors

    return torch.stack(pixels)


@dataclass(frozen=True)
class ImageScores:
    aesthetic: float
    aesthetic_dist: tuple[float, ...]
    area_probs: dict[str, float]
    embedding: np.ndarray


class MicroBatcher:
    def __init__(
        self,
        score_batch: Callable[[np.ndarray], ScoreOutput],
        areas: list[str],
        max_batch: int,
        max_delay_s: float = 0.0,
    ):
        self._score_batch = score_batch
        self._areas = list(areas)
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        # (priority, arrival, pixels, future): lower priority values leave first (LIVE = 0).
        self._queue: asyncio.PriorityQueue[tuple[int, int, Any, asyncio.Future[ImageScores]]] = asyncio.PriorityQueue()
        self._arrival = itertools.count()
        # One thread: the model is not re-entrant, and torch/ORT already use
        # every core inside a call.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="micro-batcher")

    async def stop(self) -> None:
        # A remote model (models/triton_client.py) may be waiting for its server: let it give
        # up, and take calls again afterwards (the model object may serve another scorer).
        owner: Any = getattr(self._score_batch, "__self__", None)
        if hasattr(owner, "interrupt"):
            owner.interrupt()
        await cancel_and_wait(self._task)
        self._executor.shutdown(wait=True)
        if hasattr(owner, "resume"):
            owner.resume()

    def queued(self) -> int:
        return self._queue.qsize()

    async def score(self, pixels: np.ndarray, priority: int = 0) -> ImageScores:
        """Scores of one image; `priority` 0 (live) leaves the queue before 1 (backfill)."""
        fut: asyncio.Future[ImageScores] = asyncio.get_running_loop().create_future()
        await self._queue.put((priority, next(self._arrival), pixels, fut))
        return await fut

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future[ImageScores]]]:
        batch = [self._item(await self._queue.get())]
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._item(self._queue.get_nowait()))
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self._item(await asyncio.wait_for(self._queue.get(), remaining)))
            except TimeoutError:
                break
        return batch

    @staticmethod
    def _item(entry: tuple[int, int, Any, asyncio.Future[ImageScores]]) -> tuple[Any, asyncio.Future[ImageScores]]:
        _, _, pixels, fut = entry
        return pixels, fut

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            batch = [(px, fut) for px, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            stacked = _stack([px for px, _ in batch])
            started = time.perf_counter()
            try:
                out = await loop.run_in_executor(self._executor, self._score_batch, stacked)
            except Exception as exc:  # a model failure fails this batch, not the service
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            metrics.STAGE_SECONDS.labels(stage="score").observe(time.perf_counter() - started)
            metrics.BATCH_SIZE.observe(len(batch))
            metrics.IMAGES_SCORED.inc(len(batch))
            # Whole-batch conversions (tolist() is C), not a float() per element per image.
            aesthetic = np.asarray(out.aesthetic).tolist()
            dists, areas = np.asarray(out.aesthetic_dist).tolist(), np.asarray(out.area_probs).tolist()
            embeddings = np.asarray(out.embedding, np.float32)
            for i, (_, fut) in enumerate(batch):
                if fut.done():
                    continue
                fut.set_result(
                    ImageScores(
                        aesthetic=aesthetic[i],
                        aesthetic_dist=tuple(dists[i]),
                        area_probs=dict(zip(self._areas, areas[i])),
                        embedding=embeddings[i],
                    )
                )
