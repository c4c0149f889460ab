"""Coalesces finished changes into Redis writes, per hotel.

Scored images, deletions and overrides arrive one by one from many tasks. The
writer holds each hotel's changes for a short window (setting
``write_coalesce_ms``, default 200 ms; 0 = no wait) counted from the hotel's
first pending change, then applies all of them in one ``GalleryStore.apply``:
one decision pass, one re-rank and one Lua write for the hotel, however many
events it got meanwhile. Hotels are written in the order their windows end,
up to ``MAX_HOTELS_PER_WRITE`` per pipeline, so a hot hotel (whose next window
starts when its write begins) never starves the others. A change's future
resolves only when its write is durable, so offsets are committed after it.

Failures follow the one error model (consumer/failures.py). Redis down or
refusing writes ("not now": OOM, READONLY, MISCONF, BUSY, ...) is not the
event's fault: the write is retried with capped, jittered backoff until Redis
takes it, and nothing is committed meanwhile (the in-flight cap then pauses the
partitions). A bug on one hotel (``ApplyResult.failed``) leaves the other hotels
of the chunk written and resolved; that hotel's changes are then applied one at
a time, each retried alone, and only a change that failed alone
``BUG_ATTEMPTS`` times resolves with ``IsolatedFailure`` (the scorer
dead-letters that one record as ``internal_error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from .. import metrics
from ..failures import BUG_ATTEMPTS, Backoff, IsolatedFailure, retry
from ..tasks import cancel_and_wait
from .store import ApplyResult, Change

log = logging.getLogger(__name__)

# 1,024 changes is ~1 MB of Lua arguments: big enough to amortise round trips,
# small enough to keep one script well under Redis' 5 s busy threshold.
MAX_CHANGES_PER_WRITE = 1024
# One GalleryStore.apply makes a whole chunk durable at once, after re-ranking
# every hotel in it. Chunks of at most this many hotels let the first events of a
# big backlog commit without waiting for the ranking of all others, and keep one
# Redis pipeline small.
MAX_HOTELS_PER_WRITE = 32
DEFAULT_COALESCE_S = 0.2
# A hotel with this many changes waiting is written without waiting for the end of
# its window: one re-rank of a 2,000-image hotel (~3 ms) is then < 0.1 ms per event,
# and in a backlog the in-flight cap is not spent waiting.
ENOUGH_TO_WRITE = 32

Pending = tuple[Change, asyncio.Future[None]]


class HotelStore(Protocol):
    """The hotel store as the writer and the scorer use it (state/store.py's GalleryStore)."""

    async def apply(self, namespace: str, changes: Iterable[tuple[str, Change]]) -> ApplyResult:
        """Apply (hotel_id, change) pairs in `namespace`: one decision, re-rank and fenced write per hotel."""
        ...

    async def active_namespace(self) -> str:
        """The namespace galleryrank:active names now."""
        ...

    def forget(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        """Drop cached hotels fed by these (topic, partition)s (None: all); returns how many."""
        ...


def _resolve(fut: asyncio.Future[None], result: ApplyResult, change: Change) -> None:
    """Durable (or a no-op), or the event's own fault found by the store (dead-lettered by the scorer)."""
    fault = result.rejected.get(id(change))
    if fault is None:
        fut.set_result(None)
    else:
        fut.set_exception(fault)


class StateWriter:
    def __init__(
        self,
        store: HotelStore,
        namespace: Callable[[], Awaitable[str]],
        backoff_max_s: float = 5.0,
        coalesce_s: float = DEFAULT_COALESCE_S,
    ):
        self.store = store
        self._namespace = namespace
        self.coalesce_s = coalesce_s
        # hotel -> its changes waiting; _due: hotel -> when its window ends, earliest first
        self._pending: dict[str, list[Pending]] = {}
        self._due: OrderedDict[str, float] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.backoff_max_s = backoff_max_s
        self.totals = ApplyResult()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="state-writer")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def write(self, hotel_id: str, change: Change) -> None:
        """Resolves once the change (or its no-op verdict) is durable in Redis."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._pending.get(hotel_id)
        if waiting is None:
            waiting = self._pending[hotel_id] = []
            self._due[hotel_id] = time.monotonic() + self.coalesce_s
        waiting.append((change, fut))
        if len(waiting) == ENOUGH_TO_WRITE:  # enough to amortise a re-rank: no need to wait
            self._due[hotel_id] = 0.0
            self._due.move_to_end(hotel_id, last=False)
        self._wake.set()
        await fut

    def flush(self) -> None:
        """End every window now (a revoke or a shutdown waits for these writes)."""
        for hotel_id in self._due:
            self._due[hotel_id] = 0.0
        self._wake.set()

    def pending(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def _apply_with_retry(self, changes: list[tuple[str, Change]]) -> ApplyResult:
        """One store.apply, retried for as long as the environment refuses it (never the events' fault)."""

        async def attempt() -> ApplyResult:
            ns = await self._namespace()
            started = time.perf_counter()
            result = await self.store.apply(ns, changes)
            metrics.STAGE_SECONDS.labels(stage="redis").observe(time.perf_counter() - started)
            return result

        def on_retry(exc: BaseException, delay: float, tries: int) -> None:
            metrics.REDIS_RETRIES.inc()
            log.warning("redis write failed (%s: %s); retrying in %.2fs", type(exc).__name__, str(exc)[:120], delay)

        return await retry(attempt, "redis write", backoff=Backoff(max_s=self.backoff_max_s), on_retry=on_retry)

    def _take_due(self) -> list[tuple[str, Change, asyncio.Future[None]]] | float:
        """The changes of the hotels whose windows ended (at most MAX_HOTELS_PER_WRITE hotels,
        about MAX_CHANGES_PER_WRITE changes), or the seconds until the next window ends."""
        now = time.monotonic()
        batch: list[tuple[str, Change, asyncio.Future[None]]] = []
        hotels = 0
        while self._due and hotels < MAX_HOTELS_PER_WRITE and len(batch) < MAX_CHANGES_PER_WRITE:
            hotel_id, due = next(iter(self._due.items()))
            if due > now:
                if not batch:
                    return due - now
                break
            del self._due[hotel_id]
            batch += [(hotel_id, c, f) for c, f in self._pending.pop(hotel_id) if not f.cancelled()]
            hotels += 1
        return batch

    async def _run(self) -> None:
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._take_due()
            if isinstance(batch, float):
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=batch)
                except TimeoutError:
                    pass
                continue
            if batch:
                await self._write_chunk(batch)

    async def _write_chunk(self, live: list[tuple[str, Change, asyncio.Future[None]]]) -> None:
        try:
            result = await self._apply_with_retry([(h, c) for h, c, _ in live])
        except Exception as exc:  # a bug outside any one hotel: every hotel is tried on its own
            log.exception("writing a chunk of %d changes failed; isolating its hotels", len(live))
            result = ApplyResult(failed={h: exc for h, _, _ in live})
        self._account(result)
        isolate: dict[str, list[tuple[Change, asyncio.Future[None]]]] = {}
        for hotel_id, change, fut in live:
            if hotel_id in result.failed:
                isolate.setdefault(hotel_id, []).append((change, fut))
            elif not fut.done():
                _resolve(fut, result, change)
        for hotel_id, items in isolate.items():
            await self._isolate(hotel_id, items)

    def _account(self, result: ApplyResult) -> None:
        self.totals.add(result)
        if result.stale:
            metrics.EVENTS.labels(outcome="stale").inc(result.stale)

    async def _isolate(self, hotel_id: str, items: list[tuple[Change, asyncio.Future[None]]]) -> None:
        """A hotel whose write failed on a bug: its changes one at a time, in order, each retried
        alone; a change that failed alone BUG_ATTEMPTS times resolves with IsolatedFailure.
        The hotel is reloaded from Redis for each try (the failed try was dropped from the cache)."""
        for change, fut in items:
            if fut.done():
                continue
            backoff = Backoff()
            for attempt in range(1, BUG_ATTEMPTS + 1):
                try:
                    result = await self._apply_with_retry([(hotel_id, change)])
                    failure: BaseException | None = result.failed.get(hotel_id)
                except Exception as exc:
                    result, failure = ApplyResult(), exc
                if failure is None:
                    self._account(result)
                    if not fut.done():
                        _resolve(fut, result, change)
                    break
                log.warning(
                    "hotel %s: a change failed alone (%s: %s), try %d of %d",
                    hotel_id,
                    type(failure).__name__,
                    str(failure)[:160],
                    attempt,
                    BUG_ATTEMPTS,
                )
                if attempt == BUG_ATTEMPTS:
                    if not fut.done():
                        fut.set_exception(IsolatedFailure(failure, attempt))
                else:
                    await backoff.sleep()
