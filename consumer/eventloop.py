"""Which asyncio event loop the service runs on: uvloop when installed, else the stock one.

uvloop (``pip install galleryrank[fast]``) runs the same asyncio code with its
scheduling, timers and socket I/O in C (libuv). The scorer's loop thread is
mostly scheduling and small socket reads, so it costs markedly less CPU per event
there (bench/software_ceiling.py measures it). Nothing in galleryrank needs it:
without it, or with ``event_loop = "asyncio"``, the stock loop runs the same code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def uvloop_available() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(kind: str = "auto"):
    """The loop factory for ``asyncio.Runner``: uvloop for "uvloop" and for "auto" when installed, else None."""
    if kind not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"event loop must be auto, asyncio or uvloop, not {kind!r}")
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise RuntimeError(
                "event_loop=uvloop but uvloop is not installed (pip install 'galleryrank[fast]')"
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], kind: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``kind`` names (see :func:`loop_factory`)."""
    factory = loop_factory(kind)
    log.debug("event loop: %s", "uvloop" if factory else "asyncio")
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
