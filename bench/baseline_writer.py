"""Today's state writer, frozen as part of the baseline of bench/software_ceiling.py.

consumer/state/writer.py at commit dccda32 (before issues 12 and 17), driving
the dccda32 store kept in bench/legacy_store.py: every write re-reads and
re-ranks the whole hotel. Used only by bench/baseline_scorer.py.

The original module docstring follows.

Batches finished image changes into Redis writes.

Scored images and deletions arrive one by one from many tasks; the writer
takes everything that queued up while the previous write was in flight and
applies it in one `GalleryStore.apply` (two round trips for the whole batch).
Redis being down is not the event's fault: the writer retries with capped
exponential backoff until Redis is back, and nothing is committed meanwhile
(the in-flight cap then pauses the partitions).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import BusyLoadingError, ClusterDownError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bench.legacy_store import ApplyResult, GalleryStore, ImageState
from galleryrank.consumer import metrics
from galleryrank.consumer.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# ClusterDownError/TryAgainError: a Redis Cluster mid-failover or mid-resharding.
_TRANSIENT = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    ConnectionError,
    OSError,
)
# 1,024 changes is ~1 MB of Lua arguments: big enough to amortise round trips,
# small enough to keep one script well under Redis' 5 s busy threshold.
MAX_CHANGES_PER_WRITE = 1024
# GalleryStore.apply makes a whole chunk durable at once, after re-ranking every
# hotel in it (~2 ms each on these 2-core machines, py-spy in
# bench/pipeline_bench.py). Chunks of at most this many hotels let the first
# events of a big batch commit without waiting for the ranking of all others,
# and keep one Redis pipeline small.
MAX_HOTELS_PER_WRITE = 32


def split_by_hotel(batch: list, max_hotels: int) -> list[list]:
    """Consecutive chunks of `batch` ((hotel_id, ...) tuples) with at most `max_hotels` hotels each;
    all changes of one hotel stay in one chunk."""
    by_hotel: dict[str, list] = {}
    for item in batch:
        by_hotel.setdefault(item[0], []).append(item)
    hotels = list(by_hotel.values())
    return [[item for group in hotels[i : i + max_hotels] for item in group] for i in range(0, len(hotels), max_hotels)]


class StateWriter:
    def __init__(
        self,
        store: GalleryStore,
        namespace: Callable[[], Awaitable[str]],
        backoff_max_s: float = 5.0,
    ):
        self.store = store
        self._namespace = namespace
        self._queue: asyncio.Queue[tuple[str, ImageState, asyncio.Future]] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self.backoff_max_s = backoff_max_s
        self.totals = ApplyResult()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-writer")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def write(self, hotel_id: str, record: ImageState) -> None:
        """Resolves once the change (or its no-op verdict) is durable in Redis."""
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((hotel_id, record, fut))
        await fut

    async def _apply_with_retry(self, changes: list[tuple[str, ImageState]]) -> ApplyResult:
        delay = 0.05
        while True:
            try:
                ns = await self._namespace()
                started = time.perf_counter()
                result = await self.store.apply(ns, changes)
                metrics.STAGE_SECONDS.labels(stage="redis").observe(time.perf_counter() - started)
                return result
            except _TRANSIENT as exc:
                metrics.REDIS_RETRIES.inc()
                log.warning("redis write failed (%s); retrying in %.2fs", type(exc).__name__, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max_s)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_CHANGES_PER_WRITE:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            live = [(h, r, f) for h, r, f in batch if not f.cancelled()]
            for chunk in split_by_hotel(live, MAX_HOTELS_PER_WRITE):
                await self._write_chunk(chunk)

    async def _write_chunk(self, live: list[tuple[str, ImageState, asyncio.Future]]) -> None:
        try:
            result = await self._apply_with_retry([(h, r) for h, r, _ in live])
        except Exception as exc:  # a non-transient bug: fail these events loudly, keep running
            log.exception("redis write failed permanently")
            for _, _, fut in live:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.totals.applied += result.applied
        self.totals.stale += result.stale
        self.totals.hotels_written += result.hotels_written
        if result.stale:
            metrics.EVENTS.labels(outcome="stale").inc(result.stale)
        for _, _, fut in live:
            if not fut.done():
                fut.set_result(None)
