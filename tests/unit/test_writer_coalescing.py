"""StateWriter: one write per hotel per window, oldest window first, durable before resolving.

The store here records what it is asked to apply (the writer's scheduling is
pure logic); tests/integration covers the real store in real Redis.

No assertion here needs the machine to be fast: order is checked by events and call
records; the only clock checks are lower bounds (a load can only lengthen a wait) or
bounds tens of times the expected time, each with its reason."""

from __future__ import annotations

import asyncio
import time

from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.state.store import ApplyResult
from galleryrank.consumer.state.writer import MAX_HOTELS_PER_WRITE, StateWriter

# Far above anything the writer needs (a window here is at most 0.1 s), far below a hang:
# a loaded CI machine makes waits longer, never 50x longer.
GENEROUS_S = 5.0


class RecordingStore:
    def __init__(self, delay_s: float = 0.0):
        self.calls: list[tuple[float, list[tuple[str, str]]]] = []
        self.delay_s = delay_s

    async def apply(self, namespace, changes):
        changes = list(changes)
        await asyncio.sleep(self.delay_s)
        self.calls.append((time.monotonic(), [(h, c.image_id) for h, c in changes]))
        return ApplyResult(applied=len(changes), hotels_written=len({h for h, _ in changes}))


def change(image_id: str, offset: int = 0) -> ImageChange:
    return ImageChange(image_id, Fence(0, offset), f"e-{image_id}", deleted=True)


async def _ns() -> str:
    return "ns"


async def test_changes_of_one_hotel_within_the_window_are_one_write():
    store = RecordingStore()
    writer = StateWriter(store, _ns, coalesce_s=0.1)
    writer.start()
    try:
        started = time.monotonic()
        await asyncio.gather(*(writer.write("h-1", change(f"i{k}", k)) for k in range(20)))
        assert len(store.calls) == 1 and len(store.calls[0][1]) == 20
        # A lower bound: resolved only after the window (load can only make it later).
        assert time.monotonic() - started >= 0.09
        assert writer.totals.applied == 20
    finally:
        await writer.stop()


async def test_window_zero_writes_at_once():
    store = RecordingStore()
    writer = StateWriter(store, _ns, coalesce_s=0.0)
    writer.start()
    try:
        # With a window of 0 s nothing waits for a timer: the one write resolves in one call, with
        # the writer's window far from deciding it (a 10 s window would; see the flush test).
        await asyncio.wait_for(writer.write("h-1", change("a")), timeout=GENEROUS_S)
        assert len(store.calls) == 1
    finally:
        await writer.stop()


async def test_a_hot_hotel_does_not_starve_the_others():
    store = RecordingStore(delay_s=0.01)
    writer = StateWriter(store, _ns, coalesce_s=0.05)
    writer.start()
    stop = asyncio.Event()

    async def hot() -> None:
        k = 0
        while not stop.is_set():
            asyncio.ensure_future(writer.write("hot", change(f"h{k}", k)))
            k += 1
            await asyncio.sleep(0.001)

    producer = asyncio.create_task(hot())
    try:
        await asyncio.sleep(0.05)
        # Starving = the cold hotel never written while the hot one keeps coming: it must be
        # written while the producer still runs (the wait is a generous bound, not a speed test).
        await asyncio.wait_for(writer.write("cold", change("c")), timeout=GENEROUS_S)
        assert not stop.is_set() and not producer.done()
        writes_of_hot = [c for _, c in store.calls if any(h == "hot" for h, _ in c)]
        assert writes_of_hot  # the hot hotel is written once per window, in batches
        assert max(len(c) for c in writes_of_hot) > 5
    finally:
        stop.set()
        await producer
        writer.flush()
        await asyncio.sleep(0.05)
        await writer.stop()


async def test_one_write_holds_at_most_max_hotels():
    store = RecordingStore()
    writer = StateWriter(store, _ns, coalesce_s=0.02)
    writer.start()
    try:
        hotels = 2 * MAX_HOTELS_PER_WRITE + 3
        await asyncio.gather(*(writer.write(f"h{k}", change("a")) for k in range(hotels)))
        sizes = [len({h for h, _ in c}) for _, c in store.calls]
        assert sum(sizes) == hotels and max(sizes) <= MAX_HOTELS_PER_WRITE
    finally:
        await writer.stop()


async def test_flush_ends_the_windows_now():
    store = RecordingStore()
    writer = StateWriter(store, _ns, coalesce_s=10.0)
    writer.start()
    try:
        pending = asyncio.ensure_future(writer.write("h-1", change("a")))
        await asyncio.sleep(0.01)
        assert not pending.done()
        writer.flush()
        await asyncio.wait_for(pending, timeout=GENEROUS_S)  # the 10 s window did not decide it
    finally:
        await writer.stop()
