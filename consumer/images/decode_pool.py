"""Image decodes in worker processes that can be killed: a CPU-time budget per decode,
a memory budget (in bytes) across all decodes, and a worker count that follows the
CPUs the container may use.

Why processes: a decoder thread cannot be stopped. One hostile file (a progressive
JPEG with tens of thousands of tiny scans: minutes of CPU under every size cap)
held a decode thread until it was done; two of them blocked the pool, good events
waited, and SIGTERM waited too. Here each decode runs in a worker process that

* gets ``RLIMIT_CPU`` = its CPU time so far + ``cpu_budget_s`` before every job, so
  the kernel stops a decode that runs over (SIGXCPU), whatever Pillow is doing;
* is also killed by its parent when a decode exceeds a wall-clock backstop
  (``3 x cpu_budget_s + 5 s``: a starved or stopped worker);
* is replaced on the next job (a new interpreter: ~0.2 s).

Each job is first checked in the calling thread from the header alone
(:func:`galleryrank.consumer.images.decode.probe`: format, pixel cap, JPEG scan
count, estimated decode bytes); the estimate is then held against the shared
byte budget while the worker decodes, so N workers never hold more than
``memory_budget_bytes`` between them (a big image waits for room; one bigger
than the whole budget is refused as ``too_many_pixels``).

One thread of a small pool drives one worker process (send, wait, receive), so
the event loop only awaits futures; ``oldest_busy_s()`` and the metrics show a
decode that takes long (readiness reports it as a stuck stage).
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from . import decode
from .decode import DecodedImage, DecodeError, probe

log = logging.getLogger(__name__)

_WALL_FACTOR, _WALL_SLACK_S = 3.0, 5.0


def available_cpus() -> int:
    """CPUs this process may use: the smallest of its affinity mask and its cgroup CPU quota.

    ``os.cpu_count()`` is the host's core count: in a container limited to 2 CPUs on a
    64-core node it would start 64 decoders fighting over 2 CPUs (and 64 x their memory).
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def _cgroup_quota(root: str = "/sys/fs/cgroup") -> float | None:
    """The cgroup v2 (cpu.max) or v1 (cfs quota/period) CPU limit in CPUs, None when unlimited."""
    try:
        with open(f"{root}/cpu.max") as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open(f"{root}/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open(f"{root}/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


class ByteBudget:
    """A counting semaphore in bytes, shared by the decode threads."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        amount = min(amount, self.capacity)  # callers refuse bigger ones; never wait forever
        with self._cond:
            self._cond.wait_for(lambda: self.held + amount <= self.capacity)
            self.held += amount
        try:
            yield
        finally:
            with self._cond:
                self.held -= amount
                self._cond.notify_all()


def peak_rss_bytes() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across fork+exec into it, so a worker started by a big scorer would report the scorer's."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- #
# The worker process
# --------------------------------------------------------------------------- #
def _import_preprocess_without_torch() -> None:
    """Make ``galleryrank.models.preprocess`` importable without running ``galleryrank.models``'
    ``__init__`` (which imports torch: ~300 MB and seconds per worker for a 10-line function).
    Only ever called inside a worker process, which never loads a model."""
    import importlib.util
    import sys
    import types

    if "galleryrank.models" in sys.modules:
        return
    spec = importlib.util.find_spec("galleryrank.models")
    package = types.ModuleType("galleryrank.models")
    package.__path__ = list((spec and spec.submodule_search_locations) or [])
    sys.modules["galleryrank.models"] = package
    importlib.import_module("galleryrank.models.preprocess")


def _worker_entry(fd: int) -> None:
    from multiprocessing.connection import Connection

    _worker_main(Connection(fd))


def _worker_main(conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _import_preprocess_without_torch()

    while True:
        try:
            kind, data, size, max_pixels, max_bytes, max_scans, cpu_budget_s = conn.recv()
        except (EOFError, OSError):
            return
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(used) + math.ceil(cpu_budget_s) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        decode.MAX_JPEG_SCANS = max_scans
        try:
            if kind == "model":
                result: Any = decode.decode_image(data, size, max_pixels, max_bytes)
            else:  # "overlay": the oriented RGB image, at most `size` per side
                img, _, _ = decode.load_oriented_rgb(data, size // 2, max_pixels, max_bytes)
                img.thumbnail((size, size))
                result = (img.mode, img.size, img.tobytes())
            reply: tuple = ("ok", result)
        except DecodeError as exc:
            reply = ("decode_error", exc.reason, exc.detail)
        except MemoryError:
            reply = ("decode_error", "too_many_pixels", "decoding needs more memory than available")
        except Exception as exc:  # noqa: BLE001 - a decoder bug: the parent raises it (internal_error)
            reply = ("crash", f"{type(exc).__name__}: {str(exc)[:300]}")
        del data
        try:
            conn.send((*reply, peak_rss_bytes()))
        except (BrokenPipeError, OSError):
            return


class _Worker:
    """One decode process: a fresh interpreter (``python -c``, not multiprocessing, whose
    spawn/forkserver would re-run the parent's ``__main__``, here the CLI) talking pickle
    over a socket pair. Starts in ~0.2 s (Pillow, numpy, imagehash; never torch)."""

    def __init__(self) -> None:
        self.conn, child = multiprocessing.Pipe(duplex=True)
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"from {__name__} import _worker_entry; _worker_entry({child.fileno()})"],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        child.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def exit_code(self, wait_s: float = 1.0) -> int | None:
        try:
            return self.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.exit_code(5.0)
        self.conn.close()


class DecodeCrashed(RuntimeError):
    """The decoder raised something that is not a DecodeError (a bug, not bad input)."""


class DecodePool:
    def __init__(
        self,
        workers: int,
        *,
        cpu_budget_s: float = 10.0,
        memory_budget_bytes: int = 768 << 20,
        max_pixels: int = 50_000_000,
        max_scans: int | None = None,
        name: str = "decode",
    ) -> None:
        self.workers = workers
        self.cpu_budget_s = cpu_budget_s
        self.wall_budget_s = cpu_budget_s * _WALL_FACTOR + _WALL_SLACK_S
        self.max_pixels = max_pixels
        self.max_scans = decode.MAX_JPEG_SCANS if max_scans is None else max_scans
        self.budget = ByteBudget(memory_budget_bytes)
        self.killed = 0  # workers killed over budget (tests, metrics)
        self.peak_rss_bytes = 0  # the largest peak RSS any worker reported (tests, metrics)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._local = threading.local()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._busy: dict[int, float] = {}  # thread id -> monotonic start of its current decode
        self._closed = False

    # --- the async API ------------------------------------------------------------
    async def decode(self, data: bytes, size: int) -> DecodedImage:
        """Model-ready pixels; raises DecodeError (bad input or over budget) or DecodeCrashed.

        After ``close()`` it raises CancelledError: the decode was abandoned, not failed
        (the scorer then leaves the record uncommitted, to be redone)."""
        return await self._submit("model", data, size)

    async def overlay_rgb(self, data: bytes, max_side: int):
        """The oriented RGB image (a PIL image at most ``max_side`` per side), for CAM overlays."""
        from PIL import Image

        mode, size, raw = await self._submit("overlay", data, max_side)
        return Image.frombytes(mode, size, raw)

    async def _submit(self, kind: str, data: bytes, size: int) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, kind, data, size)
        except (DecodeCrashed, RuntimeError):
            if self._closed:  # killed or refused by close(): abandoned, not a decode failure
                raise asyncio.CancelledError from None
            raise

    def oldest_busy_s(self) -> float:
        """Age of the oldest decode in progress (0 when idle): a stuck stage shows here."""
        now = time.monotonic()
        return max((now - t for t in list(self._busy.values())), default=0.0)

    def busy(self) -> int:
        return len(self._busy)

    def close(self) -> None:
        """Kill every worker now (SIGTERM must not wait for a decode)."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            workers, self._all = list(self._all), set()
        for w in workers:
            w.kill()

    # --- in a pool thread -----------------------------------------------------------
    def _worker(self) -> _Worker:
        w = getattr(self._local, "worker", None)
        if w is None or not w.alive():
            if self._closed:
                raise DecodeCrashed("decode pool closed")
            w = _Worker()
            self._local.worker = w
            with self._lock:
                self._all.add(w)
        return w

    def _drop(self, w: _Worker) -> None:
        w.kill()
        self._local.worker = None
        with self._lock:
            self._all.discard(w)

    def _run(self, kind: str, data: bytes, size: int):
        budget_bytes = self.budget.capacity
        scan_size = size if kind == "model" else size // 2
        estimate = probe(data, scan_size, self.max_pixels, budget_bytes, self.max_scans)
        me = threading.get_ident()
        with self.budget.hold(estimate):
            self._busy[me] = time.monotonic()
            try:
                return self._call(kind, data, size, budget_bytes)
            finally:
                self._busy.pop(me, None)

    def _call(self, kind: str, data: bytes, size: int, budget_bytes: int):
        w = self._worker()
        started = time.monotonic()
        try:
            w.conn.send((kind, data, size, self.max_pixels, budget_bytes, self.max_scans, self.cpu_budget_s))
            if not w.conn.poll(self.wall_budget_s):
                self.killed += 1
                self._drop(w)
                raise DecodeError(
                    "decode_timeout", f"decode took longer than {self.wall_budget_s:g} s (wall); worker killed"
                )
            reply = w.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            code = w.exit_code()
            self._drop(w)
            if self._closed:
                raise DecodeCrashed("decode pool closed") from None
            if code == -signal.SIGXCPU:
                self.killed += 1
                raise DecodeError(
                    "decode_timeout",
                    f"decode used more than {self.cpu_budget_s:g} s of CPU (after {time.monotonic() - started:.1f} s);"
                    " worker stopped",
                ) from None
            if code == -signal.SIGKILL:  # the kernel's OOM killer, most likely
                raise DecodeError("too_many_pixels", "the decoder was killed (out of memory)") from None
            raise DecodeCrashed(f"decode worker died (exit code {code})") from None
        *reply, peak_rss = reply
        self.peak_rss_bytes = max(self.peak_rss_bytes, peak_rss)
        if reply[0] == "ok":
            return reply[1]
        if reply[0] == "decode_error":
            raise DecodeError(reply[1], reply[2])
        raise DecodeCrashed(reply[1])
