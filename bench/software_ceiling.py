"""Software ceiling (issue 17): what one scorer process costs per event with the model and the decode taken out.

The real pipeline — Tansu broker, aiokafka consumer, event parsing, HTTP
downloads through the SSRF-guarded downloader, the micro-batcher, the Redis
writer and store, offset commits — with a zero-cost model and a zero-cost
decode (bench/stubs.py: 64 px JPEGs, one numpy index per image). Whatever
events/s it reaches is the most one process can feed a GPU, whatever the GPU.

One run, same topic, same broker, same Redis, each scorer in its own child
process and its own consumer group:

* ``baseline``: the loop of commit dccda32 (one task per record, one decode
  thread hand-off per record) with that commit's downloader, writer and store,
  run from a git worktree of it in its own process (bench/baseline.py), on the
  stock asyncio loop;
* ``current``: galleryrank.consumer.stream.scorer.GalleryScorer as it is now, on the
  event loop the service picks (uvloop when installed, see consumer/eventloop.py).

Per mode it prints events/s (first record -> every event durable in Redis), CPU
per event of the whole process and of the event-loop thread alone (from
/proc/self/stat and /proc/self/task/<tid>/stat, utime+stime), the mean model
batch, and the load average; then the ratios current / baseline.

    python -m bench.software_ceiling --quick             # ~1.5 min on 2 cores
    python -m bench.software_ceiling                     # 10,000 events, 200 hotels, 2 rounds
    python -m bench.software_ceiling --profile /tmp/sc   # + py-spy (GIL samples) per mode
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from bench import baseline
from bench.common import drop_namespaces, log, upsert_events

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent
MODES = ("baseline", "current")


def _ticks(path: str) -> float:
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_s() -> float:
    return _ticks("/proc/self/stat")


def thread_cpu_s(tid: int) -> float:
    return _ticks(f"/proc/self/task/{tid}/stat")


# The child's galleryrank: the baseline commit's (bench/baseline.py) or this checkout's.
SIDE = {"baseline": "old", "current": "new"}


# --- child: one scorer run ---------------------------------------------------------------
async def child_run(mode: str, settings, expect: int) -> dict:
    from bench.stubs import StubDecodePool, StubModel, stub_decode
    from galleryrank.consumer import metrics
    from galleryrank.consumer.runtime import caught_up, redis_client

    model = StubModel()
    redis = redis_client(settings)
    tid = threading.get_native_id()
    marks: dict[str, float] = {}

    def accept(_record) -> bool:
        if "t0" not in marks:
            marks.update(t0=time.perf_counter(), cpu0=process_cpu_s(), loop0=thread_cpu_s(tid))
        return True

    def finished(s) -> int:
        return s.applied + s.deleted + s.dead_lettered + s.stale

    async def stop_at(scorer) -> bool:
        return finished(scorer.summary) >= expect and await caught_up(scorer)

    if mode == "baseline":
        from galleryrank.consumer.stream import scorer as old_scorer

        # dccda32's scorer builds its own decode step and takes no decoder: in this child
        # (the old tree, nothing else runs here) its module's decode_image is the stub.
        old_scorer.decode_image = stub_decode
        scorer = old_scorer.GalleryScorer(settings, model, redis, stop_at=stop_at, accept=accept)
    else:
        from dataclasses import replace

        from galleryrank.consumer.runtime import build_parts, build_scorer
        from galleryrank.consumer.stream.scorer import Hooks, ScorerControl

        class FirstRecord(ScorerControl):
            def accept(self, scorer, record) -> bool:
                return accept(record)

        # The decode stage: the stub behind the same per-image thread hand-off as the baseline,
        # passed in as the composition root passes the real pool.
        parts = build_parts(settings, model, redis)
        parts.decode_pool.close()
        parts = replace(parts, decode_pool=StubDecodePool())
        control = Hooks(stop_at=stop_at, base=FirstRecord())
        scorer = build_scorer(settings, model, redis, control=control, parts=parts)

    async def watch() -> None:
        while True:
            if "t0" in marks and finished(scorer.summary) >= expect and "t1" not in marks:
                marks.update(t1=time.perf_counter(), cpu1=process_cpu_s(), loop1=thread_cpu_s(tid))
            await asyncio.sleep(0.05)  # end mark within 50 ms; cheap enough not to show in the loop's CPU

    watcher = asyncio.create_task(watch())
    try:
        summary = await scorer.run()
    finally:
        watcher.cancel()
        await redis.aclose()
    if "t1" not in marks:
        marks.update(t1=time.perf_counter(), cpu1=process_cpu_s(), loop1=thread_cpu_s(tid))
    done = finished(summary)
    seconds = marks["t1"] - marks["t0"]
    batches = model.batches
    return {
        "mode": mode,
        "loop": type(asyncio.get_running_loop()).__module__.split(".")[0],
        "events": summary.events,
        "done": done,
        "applied": summary.applied,
        "dead_lettered": summary.dead_lettered,
        "stale": summary.stale,
        "hotels": len(summary.hotels),
        "seconds": seconds,
        "events_per_s": done / seconds if seconds else 0.0,
        "cpu_ms_per_event": 1000 * (marks["cpu1"] - marks["cpu0"]) / max(1, done),
        "loop_ms_per_event": 1000 * (marks["loop1"] - marks["loop0"]) / max(1, done),
        "mean_batch": sum(batches) / len(batches) if batches else 0.0,
        "model_calls": len(batches),
        "redis_retries": sum(
            s.value for f in metrics.REDIS_RETRIES.collect() for s in f.samples if s.name.endswith("_total")
        ),
    }


def child_main(argv: list[str]) -> None:
    from galleryrank.consumer.eventloop import run as run_loop
    from galleryrank.consumer.settings import Settings

    p = argparse.ArgumentParser(prog="software_ceiling child")
    p.add_argument("mode", choices=MODES)
    p.add_argument("--settings", required=True)
    p.add_argument("--expect", type=int, required=True)
    a = p.parse_args(argv)
    settings = Settings(**json.loads(a.settings))
    coro = child_run(a.mode, settings, a.expect)
    # The baseline runs on the stock asyncio loop, as before issue 17.
    result = asyncio.run(coro) if a.mode == "baseline" else run_loop(coro)
    print("RESULT " + json.dumps(result), flush=True)


# --- parent: broker, image server, producer, children ---------------------------------------
CHILD_FIELDS = (
    "bootstrap_servers",
    "redis_url",
    "topic",
    "dlq_topic",
    "session_timeout_ms",
    "download_allow_networks",
    "metrics_port",
    "batch_size",
    "max_in_flight",
    "group_id",
    "namespace",
)


async def run_child(mode: str, settings, expect: int, profile: str | None) -> dict:
    spy = []
    if profile:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        spy = [exe, "record", "--format", "raw", "--threads", "--gil", "--rate", "200", "-o", profile, "--"]
    # Only the fields set here, by name: both commits' Settings accept them.
    fields = settings.model_dump_json(include=set(CHILD_FIELDS))
    proc = await asyncio.create_subprocess_exec(
        *spy,
        *baseline.child_command("bench.software_ceiling", "child", mode, "--settings", fields, "--expect", str(expect)),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(REPO),
        env=baseline.child_env(SIDE[mode]),
    )
    result = None
    async with asyncio.timeout(600):
        while line := await proc.stdout.readline():
            text = line.decode().strip()
            if text.startswith("RESULT "):
                result = json.loads(text[len("RESULT ") :])
        await proc.wait()
    if proc.returncode != 0 or result is None:
        raise RuntimeError(f"{mode} child failed with exit code {proc.returncode}")
    return result


async def run_parent(a: argparse.Namespace) -> dict:
    from bench.stubs import StaticHttpServer, tiny_jpegs
    from galleryrank.consumer.dev.embedded import EmbeddedKafka
    from galleryrank.consumer.settings import Settings
    from galleryrank.consumer.stream.kafka import create_topics
    from galleryrank.consumer.stream.produce import publish

    tag = uuid.uuid4().hex[:6]
    images = tiny_jpegs(a.images)
    out: dict = {"config": vars(a).copy(), "load_avg_start": os.getloadavg(), "runs": []}
    with EmbeddedKafka() as kafka:
        server = await StaticHttpServer(images).start()
        base = Settings(
            bootstrap_servers=kafka.bootstrap_servers,
            redis_url=a.redis_url,
            topic=f"ceiling-{tag}",
            dlq_topic=f"ceiling-{tag}.dlq",
            session_timeout_ms=6000,
            download_allow_networks="127.0.0.0/8",
            metrics_port=0,
            batch_size=a.batch_size,
            max_in_flight=a.max_in_flight,
        )
        try:
            await create_topics(base, partitions=a.partitions)
            log(f"publishing {a.events} events over {a.hotels} hotels ({a.partitions} partitions)")
            await publish(base, upsert_events(server, sorted(images), a.events, a.hotels, tag))
            for rnd in range(a.rounds):
                for mode in a.modes:
                    name = f"{mode}-{rnd}"
                    s = base.model_copy(update={"group_id": f"g-{name}-{tag}", "namespace": f"bench-{tag}-{name}"})
                    profile = f"{a.profile}-{mode}.txt" if a.profile and rnd == 0 else None
                    load = os.getloadavg()[0]
                    result = await run_child(mode, s, a.events, profile)
                    result.update(round=rnd, load_1m_before=load, load_1m_after=os.getloadavg()[0])
                    out["runs"].append(result)
                    log(
                        f"{name}: {result['events_per_s']:.0f} events/s, {result['cpu_ms_per_event']:.3f} CPU-ms/event,"
                        f" loop {result['loop_ms_per_event']:.3f} ms/event ({result['loop']})"
                    )
            out["http_requests"] = server.requests[0]
        finally:
            await server.stop()
            await drop_namespaces(a.redis_url, f"bench-{tag}-")
    out["load_avg_end"] = os.getloadavg()
    return out


def summarise(out: dict) -> dict:
    by_mode: dict[str, list[dict]] = {}
    for r in out["runs"]:
        by_mode.setdefault(r["mode"], []).append(r)

    def mean(rows, key):
        return sum(r[key] for r in rows) / len(rows)

    rows = {
        m: {k: mean(rs, k) for k in ("events_per_s", "cpu_ms_per_event", "loop_ms_per_event", "mean_batch")}
        for m, rs in by_mode.items()
    }
    ratios = {}
    if "baseline" in rows and "current" in rows:
        b, c = rows["baseline"], rows["current"]
        ratios = {
            "events_per_s": c["events_per_s"] / b["events_per_s"],
            "cpu_per_event": b["cpu_ms_per_event"] / c["cpu_ms_per_event"],
            "loop_per_event": b["loop_ms_per_event"] / c["loop_ms_per_event"],
        }
    return {"means": rows, "ratios": ratios}


def markdown(out: dict) -> str:
    s = out["summary"]
    lines = [
        "| run | loop | events/s (wall) | CPU-ms/event (process) | CPU-ms/event (loop thread) | loop-bound events/s"
        " | mean batch | load 1m |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in out["runs"]:
        lines.append(
            f"| {r['mode']} #{r['round'] + 1} | {r['loop']} | {r['events_per_s']:.0f} | {r['cpu_ms_per_event']:.3f}"
            f" | {r['loop_ms_per_event']:.3f} | {1000 / r['loop_ms_per_event']:.0f} | {r['mean_batch']:.1f}"
            f" | {r['load_1m_before']:.1f} |"
        )
    for m, v in s["means"].items():
        lines.append(
            f"| **{m}, mean** | | {v['events_per_s']:.0f} | {v['cpu_ms_per_event']:.3f} | {v['loop_ms_per_event']:.3f}"
            f" | {1000 / v['loop_ms_per_event']:.0f} | {v['mean_batch']:.1f} | |"
        )
    q = s["ratios"]
    if q:
        ok = lambda cond: "met" if cond else "MISSED"  # noqa: E731
        loop_ms = s["means"]["current"]["loop_ms_per_event"]
        lines.append(
            f"| **current / baseline** | | **{q['events_per_s']:.2f}x** (target >= 5: {ok(q['events_per_s'] >= 5)})"
            f" | {q['cpu_per_event']:.2f}x less | {q['loop_per_event']:.2f}x less"
            f" ({loop_ms:.3f} ms, target <= 0.3: {ok(loop_ms <= 0.3)}) | {q['loop_per_event']:.2f}x | | |"
        )
    return "\n".join(lines)


# --- py-spy collapsed stacks -> where the GIL time goes ---------------------------------------
STAGES = (
    ("ranking", ("ranking/", "render_document", "state/document.py")),
    ("state records (de)serialisation", ("state/records.py", "orjson", "encode_record", "decode_record", "_embedding")),
    ("state store / writer", ("state/",)),
    ("redis client", ("redis/",)),
    ("HTTP download", ("aiohttp/", "download.py", "netguard.py", "yarl/", "multidict/")),
    ("Kafka fetch/parse", ("aiokafka/",)),
    ("event parse", ("stream/events.py",)),
    ("model stub + batcher", ("batcher.py", "stubs.py")),
    ("DLQ", ("dlq.py", "dlq_dedupe.py")),
    ("metrics", ("prometheus_client/",)),
    ("scorer loop / offsets", ("offsets.py", "stream/scorer.py")),
    ("thread hand-offs", ("concurrent/futures", "run_in_executor", "call_soon_threadsafe", "threading.py")),
    ("asyncio / uvloop scheduling", ("asyncio/", "uvloop")),
)
# Samples outside the measured run: imports, start-up, the benchmark's own code.
_SKIP = ("_find_and_load", "model_validate_json")


def profile_shares(path: str) -> tuple[dict[str, float], dict[str, float], int]:
    """(share of GIL samples by stage, share by thread, samples) from a py-spy raw file.

    A sample's stage is the innermost frame matching a stage (so aiohttp calling
    asyncio counts as download, the loop running a download callback too)."""
    stages: Counter = Counter()
    threads: Counter = Counter()
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if any(skip in stack for skip in _SKIP):
            continue
        total += n
        threads[frames[0].split(": ", 1)[-1][:40] if ": " in frames[0] else "main"] += n
        # Only the thread's own frame: the GIL held in native code with no Python frame on
        # the stack: the event loop's C parts (uvloop's loop, the selector).
        stage = "asyncio / uvloop scheduling" if len(frames) == 1 else "other"
        for frame in reversed(frames):
            hit = next((name for name, pats in STAGES if any(p in frame for p in pats)), None)
            if hit:
                stage = hit
                break
        stages[stage] += n
    return (
        {k: v / total for k, v in stages.most_common()},
        {k: v / total for k, v in threads.most_common(6)},
        total,
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        child_main(argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4,000 events, 1 round (~1.5 min)")
    p.add_argument("--events", type=int, help="backlog (default 10000; quick 4000)")
    p.add_argument("--hotels", type=int, default=200)
    p.add_argument("--rounds", type=int, help="baseline/current alternations (default 2; quick 1)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--images", type=int, default=64, help="distinct 64 px JPEGs")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-in-flight", type=int, default=512)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--profile", help="py-spy raw stacks (GIL holders only) per mode to <PREFIX>-<mode>.txt")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "software_ceiling.json"))
    a = p.parse_args(argv)
    a.events = a.events or (4000 if a.quick else 10_000)
    a.rounds = a.rounds or (1 if a.quick else 2)
    a.modes = [m for m in a.modes.split(",") if m]
    started = time.perf_counter()
    out = asyncio.run(run_parent(a))
    out["summary"] = summarise(out)
    out["wall_s"] = time.perf_counter() - started
    out["markdown"] = markdown(out)
    if a.profile:
        out["profiles"] = {}
        for mode in a.modes:
            stages, threads, n = profile_shares(f"{a.profile}-{mode}.txt")
            out["profiles"][mode] = {"stages": stages, "threads": threads, "samples": n}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2, default=str))
    la0, la1 = out["load_avg_start"], out["load_avg_end"]
    print(
        f"software ceiling: {a.events} events, {a.hotels} hotels, {a.partitions} partitions, stub model + decode, "
        f"{a.images} x 64 px JPEGs; load average {la0[0]:.2f} {la0[1]:.2f} {la0[2]:.2f} at start, "
        f"{la1[0]:.2f} {la1[1]:.2f} {la1[2]:.2f} at end; wall {out['wall_s']:.0f} s"
    )
    print(out["markdown"])
    for mode, prof in out.get("profiles", {}).items():
        print(f"\n{mode}: GIL samples by stage ({prof['samples']} samples)")
        print(", ".join(f"{k} {100 * v:.0f} %" for k, v in prof["stages"].items()))
        print("by thread: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in prof["threads"].items()))


if __name__ == "__main__":
    main()
