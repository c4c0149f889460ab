"""Small asyncio helpers shared by the pipeline's background workers."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel a worker task and wait until it has really stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def next_batch(queue: asyncio.Queue, max_batch: int) -> list:
    """Wait for one queued ``(item, future)`` pair, take what else is already queued (up to
    ``max_batch``), and drop the pairs whose caller has cancelled its future."""
    items = [await queue.get()]
    while len(items) < max_batch:
        try:
            items.append(queue.get_nowait())
        except asyncio.QueueEmpty:
            break
    return [(d, f) for d, f in items if not f.cancelled()]
