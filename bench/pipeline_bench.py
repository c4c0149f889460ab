"""Pipeline benchmark (issue 4): the scorer against the hardware's ceiling and against the naive way.

One run on one machine measures, and prints as a table (also bench/results/pipeline.json):

(a) the ceiling: model-only img/s at the best batch size on the chosen backend
    (``models.load_scoring_model(backend="auto")``) and on PyTorch eager fp32;
    t_decode (``galleryrank.consumer.images.decode.decode_image`` of a 1600x1200 JPEG, one core) and
    the combined CPU ceiling = cores / (t_decode_per_core + t_model_per_core)
    (docs: docs/references.md), since decode and model share the cores;
(b) the full pipeline: events/s from a real Tansu broker through downloads from
    a local HTTP server, decode, scoring, Redis and commits, over a backlog of
    realistic 1600x1200 JPEGs (upscaled skimage photos with sensor-like noise);
(c) the naive consumer (bench/naive_consumer.py) on the same input;
plus the scorer's peak RSS under a huge backlog (100,000 events of the same
1600x1200 photos; the run is cut after a fixed time while most of the backlog
remains: what matters is that memory plateaus), p50/p99 end-to-end latency
(producer timestamp -> gallery durable in Redis) at a moderate steady rate, and
the event loop's worst lag.

Every scorer run is a child process (``python -m bench.pipeline_bench child ...``)
so that its RSS and CPU time are its own; the broker (Tansu, a process) and the
image server + producer (this process) are measured separately. Redis is the
server at --redis-url (namespaces bench-<tag>-*, removed afterwards).

    python -m bench.pipeline_bench --quick      # ~2-3 min on 2 cores
    python -m bench.pipeline_bench              # full: 5,000 events / 250 hotels, 100k backlog
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from bench.common import drop_namespaces, log, upsert_events

RESULTS = Path(__file__).parent / "results" / "pipeline.json"
CORES = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- input ------------------------------------------------------------------------
def make_photos(count: int, width: int = 1600, height: int = 1200, seed: int = 0) -> dict[str, bytes]:
    """`count` distinct width x height JPEGs (q90): skimage photos, random crop/flip, upscaled, with noise.

    The noise (sigma 3, like a phone sensor at base ISO) keeps the JPEGs at a
    realistic ~300-400 KB; a clean upscale would compress to a fraction of it.
    """
    from PIL import Image
    from skimage import data

    names = [
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "immunohistochemistry",
        "retina",
        "hubble_deep_field",
        "camera",
    ]
    sources = []
    for name in names:
        arr = np.asarray(getattr(data, name)())
        arr = arr[0] if isinstance(arr, tuple) else arr
        img = Image.fromarray(arr)
        sources.append(img.convert("RGB"))
    rng = np.random.default_rng(seed)
    photos = {}
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = int(w * rng.uniform(0.7, 1.0)), int(h * rng.uniform(0.7, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = src.crop((x, y, x + cw, y + ch)).resize((width, height), Image.BICUBIC)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        noisy = np.asarray(img, np.int16) + rng.normal(0, 3, (height, width, 3)).astype(np.int16)
        buf = io.BytesIO()
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        photos[f"photo-{i:03d}.jpg"] = buf.getvalue()
    return photos


# --- (a) the ceiling -----------------------------------------------------------------
def _timed_rate(fn, items_per_call: int, min_seconds: float, min_calls: int = 3) -> tuple[float, float]:
    """(items per wall second, CPU ms of this process per item).

    The CPU cost is what the table's ceilings are built from: on a machine shared
    with other jobs the wall rate measures the neighbours as much as the code,
    while the CPU an item costs barely moves (this file's README shows both)."""
    fn()  # warm-up (allocator, ORT arenas, oneDNN primitives)
    calls, started, cpu0 = 0, time.perf_counter(), _cpu_s()
    while calls < min_calls or time.perf_counter() - started < min_seconds:
        fn()
        calls += 1
    items = calls * items_per_call
    return items / (time.perf_counter() - started), 1000 * (_cpu_s() - cpu0) / items


def measure_decode(photos: dict[str, bytes], min_seconds: float) -> dict:
    from galleryrank.consumer.images.decode import decode_image

    bodies = list(photos.values())
    state = {"i": 0}

    def one():
        decode_image(bodies[state["i"] % len(bodies)])
        state["i"] += 1

    rate, cpu_ms = _timed_rate(one, 1, min_seconds, min_calls=len(bodies))
    return {
        "img_per_s_one_core": rate,
        "cpu_ms_per_img": cpu_ms,
        "jpeg_kb_mean": sum(map(len, bodies)) / len(bodies) / 1024,
    }


def measure_model(model, pixels: np.ndarray, batch_sizes: list[int], min_seconds: float) -> dict:
    rates, cpu = {}, {}
    for bs in batch_sizes:
        batch = np.ascontiguousarray(np.resize(pixels, (bs,) + pixels.shape[1:]))
        rates[bs], cpu[bs] = _timed_rate(lambda b=batch: model.score(b), bs, min_seconds)
    best = min(cpu, key=cpu.get)  # the batch size that costs the least CPU per image
    return {
        "backend": model.backend,
        "img_per_s_by_batch": rates,
        "cpu_ms_per_img_by_batch": cpu,
        "best_batch": best,
        "best_img_per_s": rates[best],
        "cpu_ms_per_img": cpu[best],
    }


def measure_ceiling(photos: dict[str, bytes], quick: bool, cache_dir: str) -> dict:
    from galleryrank.consumer.images.decode import decode_image
    from galleryrank.models import load_scoring_model

    seconds = 2.0 if quick else 5.0
    decode = measure_decode(photos, seconds)
    pixels = np.stack([decode_image(b).pixels for b in list(photos.values())[:32]])
    chosen = load_scoring_model(backend="auto", cache_dir=cache_dir)
    eager_model = load_scoring_model(backend="torch")
    auto = measure_model(chosen, pixels, [1, 16, 32] if quick else [1, 8, 16, 32, 64], seconds)
    eager = measure_model(eager_model, pixels, [32] if quick else [16, 32], seconds)
    _CEILING_STATE.update(photos=photos, pixels=pixels, chosen=chosen, eager=eager_model, seconds=seconds)
    return _combine({"decode": decode, "model_auto": auto, "model_eager_fp32": eager})


# Models and inputs of the ceiling, kept for the re-measurement after (b).
_CEILING_STATE: dict = {}


def _combine(c: dict) -> dict:
    # Ceilings from CPU cost per image: what the stage reaches with every core to itself.
    c["t_decode_ms"] = c["decode"]["cpu_ms_per_img"]
    c["t_model_core_ms"] = c["model_auto"]["cpu_ms_per_img"]
    c["model_auto_cpu_bound_img_per_s"] = 1000 * CORES / c["t_model_core_ms"]
    c["model_eager_cpu_bound_img_per_s"] = 1000 * CORES / c["model_eager_fp32"]["cpu_ms_per_img"]
    c["combined_ceiling_img_per_s"] = 1000 * CORES / (c["t_decode_ms"] + c["t_model_core_ms"])
    return c


def remeasure_ceiling(c: dict) -> dict:
    """Measure decode and both models (at their best batch) again right after (b), and use the
    mean of before and after: on a shared machine the load drifts between the phases, and a
    ratio of two rates taken minutes apart would otherwise measure the drift."""
    st = _CEILING_STATE
    after = {
        "decode": measure_decode(st["photos"], st["seconds"]),
        "model_auto": measure_model(st["chosen"], st["pixels"], [c["model_auto"]["best_batch"]], st["seconds"]),
        "model_eager_fp32": measure_model(
            st["eager"], st["pixels"], [c["model_eager_fp32"]["best_batch"]], st["seconds"]
        ),
    }
    pairs = {
        ("decode", "img_per_s_one_core"),
        ("decode", "cpu_ms_per_img"),
        ("model_auto", "best_img_per_s"),
        ("model_auto", "cpu_ms_per_img"),
        ("model_eager_fp32", "best_img_per_s"),
        ("model_eager_fp32", "cpu_ms_per_img"),
    }
    c["before_after"] = {f"{part}.{key}": [c[part][key], after[part][key]] for part, key in sorted(pairs)}
    for part, key in pairs:
        c[part][key] = statistics.fmean(c["before_after"][f"{part}.{key}"])
    return _combine(c)


# --- child processes: one scorer run each ---------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def _peak_rss_mb() -> float:
    """VmHWM: this process's RSS high-water mark. Not ru_maxrss: Linux carries that
    across fork+exec, so a child would report its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _histogram_means(metric) -> dict[str, float]:
    """Mean per label set of a prometheus Histogram (sum / count)."""
    sums, counts = {}, {}
    for fam in metric.collect():
        for s in fam.samples:
            label = s.labels.get("stage", "all")
            if s.name.endswith("_sum"):
                sums[label] = s.value
            elif s.name.endswith("_count"):
                counts[label] = s.value
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


async def _loop_lag_probe(samples: list[float], period: float = 0.02) -> None:
    """How late the event loop wakes a 20 ms sleeper: anything blocking the loop shows here."""
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(period)
        samples.append(time.perf_counter() - t0 - period)


def _ort_session_options(options: list[str]) -> None:
    """Experiment (--ort-options): ONNX Runtime session options not (yet) in models/export.py,
    applied in this scorer process only. ``no-spin``: intra-op threads sleep instead of
    spin-waiting between ops, leaving the cores to the decode threads; ``no-arena``: no
    CPU memory arena (the arena keeps the largest batch's activations, ~0.5 GB at batch 32)."""
    import onnxruntime as ort

    original = ort.InferenceSession

    class ConfiguredSession(original):
        def __init__(self, path, sess_options=None, **kw):
            sess_options = sess_options or ort.SessionOptions()
            if "no-spin" in options:
                sess_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if "no-arena" in options:
                sess_options.enable_cpu_mem_arena = False
            super().__init__(path, sess_options=sess_options, **kw)

    ort.InferenceSession = ConfiguredSession


async def child_pipeline(settings, expect: int, stop_after_s: float | None, announce_ready: bool) -> dict:
    from galleryrank.consumer import metrics
    from galleryrank.consumer.runtime import build_parts, caught_up, load_model, redis_client
    from galleryrank.consumer.stream.scorer import GalleryScorer, Hooks

    if os.environ.get("BENCH_ORT_OPTIONS"):
        _ort_session_options(os.environ["BENCH_ORT_OPTIONS"].split(","))
    model = load_model(settings)
    redis = redis_client(settings)
    marks: dict[str, float] = {"rss_loaded": _rss_mb()}
    latencies: list[float] = []
    timeline: list[dict] = []
    lag: list[float] = []

    class TimedScorer(GalleryScorer):
        """The real scorer; records when the first record arrived and each event's end-to-end latency."""

        def _spawn_batch(self, tp, records) -> None:
            if "first" not in marks:
                marks["first"], marks["cpu0"] = time.perf_counter(), _cpu_s()
            super()._spawn_batch(tp, records)

        async def _process(self, record) -> None:
            await super()._process(record)
            # Producer CreateTime (ms, Tansu keeps it) -> now: produced -> gallery durable in Redis.
            latencies.append(time.time() - record.timestamp / 1000)

    async def on_assigned(_scorer, _partitions) -> None:
        if announce_ready:
            print("READY", flush=True)

    async def done(scorer) -> bool:
        if expect and scorer.progress().summary.events < expect:
            return False
        return await caught_up(scorer)

    hooks = Hooks(stop_at=None if stop_after_s else done, on_assigned=on_assigned)
    scorer = TimedScorer(settings, model, build_parts(settings, model, redis), control=hooks)
    max_in_flight = 0

    async def sample() -> None:
        nonlocal max_in_flight
        started = time.perf_counter()
        while True:
            now = scorer.progress()
            in_flight = now.in_flight
            max_in_flight = max(max_in_flight, in_flight)
            timeline.append(
                {
                    "t": round(time.perf_counter() - started, 1),
                    "rss_mb": round(_rss_mb(), 1),
                    "in_flight": in_flight,
                    "paused": len(now.paused),
                    "events": now.summary.events,
                }
            )
            if stop_after_s and "first" in marks and time.perf_counter() - marks["first"] >= stop_after_s:
                if "cut" not in marks:
                    s = scorer.progress().summary
                    marks["cut"], marks["done_at_cut"] = time.perf_counter(), s.applied + s.deleted + s.dead_lettered
                scorer.stop()
            await asyncio.sleep(0.25)

    helpers = [asyncio.create_task(sample()), asyncio.create_task(_loop_lag_probe(lag))]
    try:
        summary = await scorer.run()
    finally:
        for t in helpers:
            t.cancel()
        await redis.aclose()
    end = marks.get("cut", time.perf_counter())  # a cut run: the rate up to the cut, not the drain after it
    seconds = end - marks.get("first", end)
    done_events = int(marks.get("done_at_cut", summary.applied + summary.deleted + summary.dead_lettered))
    scored = sum(s.value for fam in metrics.IMAGES_SCORED.collect() for s in fam.samples if s.name.endswith("_total"))
    batch_means = _histogram_means(metrics.BATCH_SIZE)
    lat_sorted = sorted(latencies)
    return {
        "backend": model.backend,
        "events": summary.events,
        "done_events": done_events,
        "applied": summary.applied,
        "dead_lettered": summary.dead_lettered,
        "hotels": len(summary.hotels),
        "seconds": seconds,
        "events_per_s": done_events / seconds if seconds else 0.0,
        "cpu_s_per_event": (_cpu_s() - marks.get("cpu0", 0.0)) / max(1, done_events),
        "images_scored": scored,
        "mean_batch": batch_means.get("all"),
        "stage_mean_ms": {k: 1000 * v for k, v in _histogram_means(metrics.STAGE_SECONDS).items()},
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_model_load_mb": marks.get("rss_loaded"),
        "max_in_flight": max_in_flight,
        "pauses": scorer.progress().pause_count,
        "loop_lag_ms": {
            "p99": 1000 * float(np.percentile(lag, 99)) if lag else None,
            "max": 1000 * max(lag) if lag else None,
        },
        "latency_s": {
            "p50": float(np.percentile(lat_sorted, 50)) if lat_sorted else None,
            "p99": float(np.percentile(lat_sorted, 99)) if lat_sorted else None,
            "n": len(lat_sorted),
        },
        "timeline": timeline[:: max(1, len(timeline) // 120)],
    }


async def child_naive(settings, max_events: int) -> dict:
    from bench.naive_consumer import run_naive
    from galleryrank.consumer.runtime import load_model, redis_client

    model = load_model(settings)
    redis = redis_client(settings)
    try:
        cpu0 = _cpu_s()
        out = await run_naive(settings, model, redis, settings.namespace, max_events)
        out["cpu_s_per_event"] = (_cpu_s() - cpu0) / max(1, out["events"])
        out["backend"] = model.backend
        out["peak_rss_mb"] = _peak_rss_mb()
        return out
    finally:
        await redis.aclose()


def child_main(argv: list[str]) -> None:
    from galleryrank.consumer.settings import Settings

    p = argparse.ArgumentParser(prog="pipeline_bench child")
    p.add_argument("mode", choices=["pipeline", "naive"])
    p.add_argument("--settings", required=True, help="Settings as JSON")
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--stop-after-s", type=float, default=None)
    p.add_argument("--ready", action="store_true")
    a = p.parse_args(argv)
    settings = Settings.model_validate_json(a.settings)
    if a.mode == "pipeline":
        result = asyncio.run(child_pipeline(settings, a.expect, a.stop_after_s, a.ready))
    else:
        result = asyncio.run(child_naive(settings, a.expect))
    print("RESULT " + json.dumps(result), flush=True)


# --- the parent: broker, image server, producer, children -------------------------------------
class ProcCpu:
    """CPU seconds used by another process (the broker) between two reads."""

    def __init__(self, pid: int):
        self.pid = pid

    def read(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def run_child(args: list[str], on_ready=None, timeout_s: float = 900, profile: str | None = None) -> dict:
    # --profile: py-spy samples the child (all threads, native frames off) into collapsed stacks.
    spy = ["py-spy", "record", "--format", "raw", "--threads", "--rate", "50", "-o", profile, "--"] if profile else []
    proc = await asyncio.create_subprocess_exec(
        *spy,
        sys.executable,
        "-m",
        "bench.pipeline_bench",
        "child",
        *args,
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parent.parent),
    )
    result = None
    ready_task = None
    async with asyncio.timeout(timeout_s):
        while line := await proc.stdout.readline():
            text = line.decode().strip()
            if text == "READY" and on_ready is not None:
                ready_task = asyncio.create_task(on_ready())
            elif text.startswith("RESULT "):
                result = json.loads(text[len("RESULT ") :])
        await proc.wait()
    if ready_task is not None:
        await ready_task
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"benchmark child {args[0]} failed with exit code {proc.returncode}")
    return result


async def publish_at_rate(settings, events: list, rate: float) -> float:
    """Produce `events` evenly at `rate` per second (acks=all); returns the achieved rate."""
    from galleryrank.consumer.stream.events import encode_event
    from galleryrank.consumer.stream.kafka import make_producer

    producer = make_producer(settings, linger_ms=0)
    await producer.start()
    try:
        started = time.perf_counter()
        for i, ev in enumerate(events):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key, value = encode_event(ev)
            await producer.send(settings.topic, key=key, value=value)
        await producer.flush()
        return len(events) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def run_parent(a: argparse.Namespace) -> dict:
    from galleryrank.consumer.dev.embedded import EmbeddedKafka
    from galleryrank.consumer.dev.samples import ImageServer
    from galleryrank.consumer.settings import Settings
    from galleryrank.consumer.stream.kafka import create_topics
    from galleryrank.consumer.stream.produce import publish

    tag = uuid.uuid4().hex[:6]
    log(f"generating {a.photos} photos 1600x1200")
    photos = make_photos(a.photos)
    names = sorted(photos)
    out: dict = {
        "machine": {
            "cores": CORES,
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "load_avg_at_start": os.getloadavg(),
        },
        "config": vars(a).copy(),
    }

    log("(a) ceiling: decode and model-only")
    out["ceiling"] = measure_ceiling(photos, a.quick, a.cache_dir)

    with EmbeddedKafka() as kafka:
        broker_cpu = ProcCpu(kafka.proc.pid)
        server = await ImageServer(photos).start()
        base = Settings(
            bootstrap_servers=kafka.bootstrap_servers,
            redis_url=a.redis_url,
            session_timeout_ms=6000,
            download_allow_networks="127.0.0.0/8",
            metrics_port=0,
            backend=a.backend,
            device="cpu",
            model_cache_dir=a.cache_dir,
            batch_size=a.batch_size,
            max_in_flight=a.max_in_flight,
            decode_workers=a.decode_workers,
        )

        def settings_for(name: str, topic: str) -> Settings:
            return base.model_copy(
                update={
                    "topic": f"{topic}-{tag}",
                    "dlq_topic": f"{topic}-{tag}.dlq",
                    "group_id": f"{name}-{tag}",
                    "namespace": f"bench-{tag}-{name}",
                }
            )

        async def scorer_run(mode: str, s: Settings, **kw) -> dict:
            cpu0, self0 = broker_cpu.read(), _cpu_s()
            args = [mode, "--settings", s.model_dump_json()]
            if kw.get("expect"):
                args += ["--expect", str(kw["expect"])]
            if kw.get("stop_after_s"):
                args += ["--stop-after-s", str(kw["stop_after_s"])]
            if kw.get("on_ready"):
                args.append("--ready")
            result = await run_child(args, kw.get("on_ready"), profile=kw.get("profile"))
            result["broker_cpu_s"] = broker_cpu.read() - cpu0
            result["bench_process_cpu_s"] = _cpu_s() - self0  # image server + producer
            return result

        try:
            # (b) and (c) read the same topic with different consumer groups.
            main = settings_for("pipeline", "main")
            await create_topics(main, partitions=a.partitions)
            await publish(main, upsert_events(server, names, a.events, a.hotels, "main"))
            log(f"(b) pipeline: {a.events} events over {a.hotels} hotels")
            out["pipeline"] = await scorer_run("pipeline", main, expect=a.events, profile=a.profile)
            log(f"    {out['pipeline']['events_per_s']:.1f} events/s")
            log("(a) again, right after (b)")
            out["ceiling"] = remeasure_ceiling(out["ceiling"])
            if a.only_pipeline:
                return out

            naive = settings_for("naive", "main")
            log(f"(c) naive consumer: first {a.naive_events} events of the same topic")
            out["naive"] = await scorer_run("naive", naive, expect=a.naive_events)
            log(f"    {out['naive']['events_per_s']:.1f} events/s")

            rss = settings_for("rss", "backlog")
            await create_topics(rss, partitions=a.partitions)
            await publish(rss, upsert_events(server, names, a.backlog, a.hotels * 10, "backlog"))
            log(f"memory: {a.backlog} event backlog, cut after {a.backlog_seconds:g} s")
            out["backlog"] = await scorer_run("pipeline", rss, stop_after_s=a.backlog_seconds)
            out["backlog"]["backlog_events"] = a.backlog

            lat = settings_for("latency", "steady")
            await create_topics(lat, partitions=a.partitions)
            rate = max(1.0, a.latency_load * out["pipeline"]["events_per_s"])
            steady = list(upsert_events(server, names, int(rate * a.latency_seconds), a.hotels, "steady"))
            produced = {}

            async def produce_steady() -> None:
                await asyncio.sleep(1.0)  # let the first fetch settle after the join
                produced["rate"] = await publish_at_rate(lat, steady, rate)

            log(f"latency: {len(steady)} events at {rate:.1f}/s ({a.latency_load:.0%} of (b))")
            out["latency"] = await scorer_run("pipeline", lat, expect=len(steady), on_ready=produce_steady)
            out["latency"]["produced_per_s"] = produced.get("rate")
        finally:
            await server.stop()
            await drop_namespaces(a.redis_url, f"bench-{tag}-")
    return out


def ratios(r: dict) -> dict:
    c, b, n = r["ceiling"], r["pipeline"], r["naive"]
    b_cpu_bound = 1000 * CORES / (1000 * b["cpu_s_per_event"])
    return {
        "pipeline_vs_model_only": b["events_per_s"] / c["model_auto"]["best_img_per_s"],
        "pipeline_vs_model_only_cpu": c["t_model_core_ms"] / (1000 * b["cpu_s_per_event"]),
        "pipeline_cpu_bound_events_per_s": b_cpu_bound,
        "pipeline_vs_combined_ceiling": b["events_per_s"] / c["combined_ceiling_img_per_s"],
        "pipeline_vs_combined_ceiling_cpu": b_cpu_bound / c["combined_ceiling_img_per_s"],
        "pipeline_vs_naive": b["events_per_s"] / n["events_per_s"],
        "pipeline_cores_used": b["events_per_s"] * b["cpu_s_per_event"],
        "naive_cores_used": n["events_per_s"] * n["cpu_s_per_event"],
        "backend_vs_eager_fp32": c["model_eager_fp32"]["cpu_ms_per_img"] / c["t_model_core_ms"],
        "backend_vs_eager_fp32_wall": c["model_auto"]["best_img_per_s"] / c["model_eager_fp32"]["best_img_per_s"],
        "peak_rss_vs_2gb": r["backlog"]["peak_rss_mb"] / 2048,
    }


def table_rows(r: dict) -> list[tuple[str, str, str]]:
    c, b, n, bl, lat, q = r["ceiling"], r["pipeline"], r["naive"], r["backlog"], r["latency"], r["ratios"]
    auto, eager = c["model_auto"], c["model_eager_fp32"]
    ok = lambda cond: "met" if cond else "MISSED"  # noqa: E731
    ba = c.get("before_after", {})
    spread = lambda key: " / ".join(f"{v:.0f}" for v in ba.get(key, []))  # noqa: E731
    by_batch = ", ".join(f"b{k}: {v:.1f}" for k, v in auto["cpu_ms_per_img_by_batch"].items())
    return [
        (
            "(a) model only, chosen backend",
            f"{c['model_auto_cpu_bound_img_per_s']:.1f} img/s",
            f"{auto['backend']}: {c['t_model_core_ms']:.1f} core-ms/img at best batch {auto['best_batch']} "
            f"(core-ms by batch {by_batch}); wall before/after (b): {spread('model_auto.best_img_per_s')} img/s",
        ),
        (
            "(a) model only, PyTorch eager fp32",
            f"{c['model_eager_cpu_bound_img_per_s']:.1f} img/s",
            f"{eager['cpu_ms_per_img']:.1f} core-ms/img at batch {eager['best_batch']}; "
            f"wall before/after (b): {spread('model_eager_fp32.best_img_per_s')} img/s",
        ),
        (
            "(a) decode 1600x1200 JPEG (draft), 1 core",
            f"{c['t_decode_ms']:.2f} core-ms/img",
            f"{c['decode']['jpeg_kb_mean']:.0f} KB mean; wall before/after: {spread('decode.img_per_s_one_core')} img/s",
        ),
        (
            "(a) combined CPU ceiling",
            f"{c['combined_ceiling_img_per_s']:.1f} img/s",
            f"{CORES} cores / (t_decode + t_model)",
        ),
        (
            "(b) full pipeline, measured",
            f"{b['events_per_s']:.1f} events/s",
            f"{b['done_events']} events, {b['hotels']} hotels, mean batch {b['mean_batch'] or 0:.1f}; "
            f"used {q['pipeline_cores_used']:.2f} of {CORES} cores (the rest: other jobs, broker, image server)",
        ),
        (
            "(b) full pipeline, CPU cost",
            f"{1000 * b['cpu_s_per_event']:.1f} core-ms/event",
            f"= {q['pipeline_cpu_bound_events_per_s']:.1f} events/s with {CORES} free cores; broker "
            f"{b['broker_cpu_s']:.1f} core-s, image server + producer {b['bench_process_cpu_s']:.1f} core-s in total",
        ),
        (
            "(c) naive consumer",
            f"{n['events_per_s']:.1f} events/s",
            f"{n['events']} events, batch 1, 1 write + 1 commit each; {1000 * n['cpu_s_per_event']:.1f} core-ms/event, "
            f"used {q['naive_cores_used']:.2f} cores",
        ),
        (
            "(b)/(a) model only",
            f"{q['pipeline_vs_model_only']:.2f} wall, {q['pipeline_vs_model_only_cpu']:.2f} CPU",
            f"target >= 0.85: {ok(max(q['pipeline_vs_model_only'], q['pipeline_vs_model_only_cpu']) >= 0.85)}",
        ),
        (
            "(b)/(a) combined ceiling",
            f"{q['pipeline_vs_combined_ceiling']:.2f} wall, {q['pipeline_vs_combined_ceiling_cpu']:.2f} CPU",
            "decode + model on the same cores",
        ),
        ("(b)/(c)", f"{q['pipeline_vs_naive']:.2f}", f"target >= 2: {ok(q['pipeline_vs_naive'] >= 2)}"),
        (
            "backend / eager fp32",
            f"{q['backend_vs_eager_fp32']:.2f} CPU, {q['backend_vs_eager_fp32_wall']:.2f} wall",
            f"target >= 2.5: {ok(q['backend_vs_eager_fp32'] >= 2.5)}",
        ),
        (
            "peak RSS, huge backlog",
            f"{bl['peak_rss_mb']:.0f} MB",
            f"{bl['backlog_events']} backlog, {bl['done_events']} done in {bl['seconds']:.0f} s (cut), "
            f"{bl.get('rss_after_model_load_mb') or 0:.0f} MB after model load, max in-flight {bl['max_in_flight']}, "
            f"{bl['pauses']} pauses; <= 2 GB: {ok(q['peak_rss_vs_2gb'] <= 1)}",
        ),
        (
            "latency p50 / p99",
            f"{lat['latency_s']['p50']:.3f} / {lat['latency_s']['p99']:.3f} s",
            f"{lat['latency_s']['n']} events at {lat.get('produced_per_s') or 0:.1f}/s (steady)",
        ),
        (
            "event-loop lag p99 / max",
            f"{b['loop_lag_ms']['p99']:.1f} / {b['loop_lag_ms']['max']:.1f} ms",
            "20 ms sleeper in the scorer during (b)",
        ),
    ]


def print_table(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"galleryrank pipeline benchmark ({CORES} cores, {r['machine']['cpu']})")
    for col in ("measure", "value", "note"):
        t.add_column(col)
    for row in table_rows(r):
        t.add_row(*row)
    Console().print(t)
    stages = r["pipeline"]["stage_mean_ms"]
    print(
        "(b) mean stage times, ms (download/decode per image, score/redis per batch): "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(stages.items()))
    )


def markdown_table(r: dict) -> str:
    lines = ["| measure | value | note |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table_rows(r)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        child_main(argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes: ~2-3 min on 2 cores")
    p.add_argument("--events", type=int, help="backlog for (b) (default 5000; quick 1000)")
    p.add_argument("--hotels", type=int, help="hotels for (b) (default 250; quick 100)")
    p.add_argument("--naive-events", type=int, help="events for (c) (default 1000; quick 200)")
    p.add_argument("--backlog", type=int, help="backlog for the memory run (default 100000; quick 20000)")
    p.add_argument("--backlog-seconds", type=float, help="memory run is cut after this (default 60; quick 20)")
    p.add_argument("--latency-seconds", type=float, help="steady-rate run length (default 40; quick 15)")
    p.add_argument("--latency-load", type=float, default=0.5, help="steady rate as a share of (b)'s rate")
    p.add_argument("--photos", type=int, help="distinct 1600x1200 JPEGs (default 40; quick 16)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-in-flight", type=int, default=512)
    p.add_argument("--backend", default="auto", choices=["auto", "torch", "torch-fp16", "torch-bf16", "onnxruntime"])
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/galleryrank"))
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--profile", help="py-spy collapsed stacks of the (b) scorer to this file (pip install py-spy)")
    p.add_argument("--only-pipeline", action="store_true", help="stop after (a) and (b) (profiling, tuning)")
    p.add_argument("--ort-options", default="", help="experiment, comma separated: no-spin, no-arena")
    p.add_argument("--decode-workers", type=int, default=0, help="decode threads in the scorer (0 = cores)")
    a = p.parse_args(argv)
    defaults = {
        "events": (5000, 1000),
        "hotels": (250, 100),
        "naive_events": (1000, 200),
        "backlog": (100_000, 20_000),
        "backlog_seconds": (60.0, 20.0),
        "latency_seconds": (40.0, 15.0),
        "photos": (40, 16),
    }
    for k, (full, quick) in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, quick if a.quick else full)
    if a.ort_options:
        os.environ["BENCH_ORT_OPTIONS"] = a.ort_options  # read by the scorer children
    started = time.perf_counter()
    result = asyncio.run(run_parent(a))
    if a.only_pipeline:
        Path(a.out).write_text(json.dumps(result, indent=2, default=str))
        print(
            json.dumps(
                {
                    k: result["pipeline"][k]
                    for k in (
                        "events_per_s",
                        "cpu_s_per_event",
                        "mean_batch",
                        "stage_mean_ms",
                        "peak_rss_mb",
                        "loop_lag_ms",
                    )
                }
            )
        )
        return
    result["ratios"] = ratios(result)
    result["wall_s"] = time.perf_counter() - started
    result["markdown"] = markdown_table(result)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=2, default=str))
    print_table(result)
    print(f"wall {result['wall_s']:.0f} s; JSON: {a.out}")


if __name__ == "__main__":
    main()
