"""Host CPU per event by stage, of one `galleryrank consume` process under load (issue 26, item 2).

The real service: a Tansu broker, Redis, JPEGs served over loopback HTTP, one consumer process.
For each decode path asked for (``--paths``, one row set per path, all in one run) it publishes
E events and, from the first event published to the last one committed, measures

* the CPU of every thread of the consumer (``/proc/<pid>/task/<tid>/stat``) and of its decode
  worker processes (its process group), so the total is exact;
* what each Python thread was doing, with py-spy (``record --threads --format raw``, 200 Hz):
  each sample is put in a stage by its innermost frame that a rule below knows (Kafka, download,
  header checks, decode, pHash, model, state, Redis, commit, ...);

and splits each thread's CPU over the stages in proportion to its samples. Threads py-spy does
not see (native pools: ONNX Runtime / torch intra-op threads, nvImageCodec's decode threads)
are reported by their kernel name. Prints one table: CPU-ms per event by stage, one column per
path, with the events/s and the load average of the run.

    python -m bench.stage_profile --paths cpu,nvimgcodec-cpu          # this CPU machine
    python -m bench.stage_profile --device cuda --paths nvjpeg,hardware --events 8000  # bench/gpu.sh
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

from bench.model_server_bench import CLK_TCK, Consumers, committed_total, free_port, group_cpu_s, http_text, scorer_env

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
PARTITIONS = 16

# (stage, fragments of a py-spy frame "func (/full/path.py:line)"); the innermost frame that
# matches any rule names the sample's stage. Order matters only within one frame.
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("header checks", ("probe (", "_check_cost (", "check_jpeg_scans (", "read_header (", "_jpeg_header_ok (")),
    ("pHash", ("phash_int (", "phash_batch (", "/imagehash/")),
    ("decode", ("/consumer/images/decode.py", "/consumer/images/gpu_decode.py", "/consumer/images/hw_decode.py",
                "/consumer/images/decode_pool.py", "/torchvision/io/")),
    # torch/ORT frames are not rules: the caller's frame (scoring.py, hw_decode.py's resize, ...) decides.
    ("model", ("/models/", "/consumer/stream/batcher.py")),
    ("state (re-rank, records)", ("/consumer/state/", "/galleryrank/ranking/", "/ranking/")),
    ("Redis", ("/redis/",)),
    ("Kafka", ("/aiokafka/",)),
    ("download (HTTP)", ("/aiohttp/", "/consumer/images/download.py", "/consumer/images/netguard.py", "/yarl/",
                         "/multidict/")),
    ("commit + offsets", ("/consumer/stream/offsets.py", "commit (")),
    ("DLQ", ("/consumer/stream/dlq",)),
    ("parse events", ("/consumer/stream/events.py",)),
    ("metrics", ("/prometheus_client/", "/consumer/metrics.py", "/consumer/health.py")),
    ("logging", ("/logging/",)),
    # uvloop runs the loop in C: socket reads/writes and callbacks show as its run() frame
    ("event loop (uvloop: socket I/O in C)", ("/consumer/eventloop.py",)),
    ("scorer bookkeeping", ("/consumer/stream/", "/consumer/")),
]  # fmt: skip
OTHER = "event loop / other Python"


# (stage, the frame that decided it) -> samples, over the whole run: what --detail prints
FRAMES: dict[tuple[str, str], int] = defaultdict(int)


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for stage, needles in RULES:
            if any(n in frame for n in needles):
                return stage
    return OTHER


def _classify_counted(frames: list[str], count: int) -> str:
    stage = classify(frames)
    decided = next(
        (f for f in reversed(frames) if any(n in f for _, ns in RULES for n in ns)), frames[-1] if frames else ""
    )
    FRAMES[(stage, decided.split(" (")[0] + " (" + decided.rsplit("/", 1)[-1])] += count
    return stage


def parse_raw(text: str) -> dict[int, tuple[str, dict[str, int]]]:
    """py-spy raw output with --threads -> {tid: (thread name, {stage: samples})}."""
    out: dict[int, tuple[str, dict[str, int]]] = {}
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        m = _THREAD.match(stack)
        if m is None or not count.isdigit():
            continue
        tid, name, frames = int(m.group(1), 0), m.group(2) or "", m.group(3)
        entry = out.setdefault(tid, (name, defaultdict(int)))
        entry[1][_classify_counted(frames.split(";") if frames else [], int(count))] += int(count)
    return out


# "thread (TID): NAME;frame;frame" (NAME and frames may be missing)
_THREAD = re.compile(r"^thread \((\w+)\)(?:: ([^;]*))?;?(.*)$")


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """{tid: (kernel name, utime+stime seconds)} of every thread of `pid`."""
    out = {}
    for entry in os.scandir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{entry.name}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def process_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def attribute(cpu0: dict, cpu1: dict, samples: dict, workers_s: float, events: int) -> dict[str, float]:
    """CPU-ms per event by stage from per-thread CPU deltas and py-spy samples."""
    stages: dict[str, float] = defaultdict(float)
    for tid, (comm, s1) in cpu1.items():
        spent = s1 - cpu0.get(tid, (comm, 0.0))[1]
        if spent <= 0:
            continue
        if tid in samples and sum(samples[tid][1].values()):
            name, by_stage = samples[tid]
            total = sum(by_stage.values())
            for stage, n in by_stage.items():
                stages[stage] += spent * n / total
        else:
            stages[f"native threads ({comm})"] += spent
    if workers_s > 0:
        stages["decode (worker processes)"] += workers_s
    return {k: 1000 * v / events for k, v in sorted(stages.items(), key=lambda kv: -kv[1])}


async def profile_path(path: str, a: argparse.Namespace, infra: dict) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from galleryrank.consumer.stream.kafka import create_topics
    from galleryrank.consumer.stream.produce import publish, upserted

    tag = f"prof-{path}-{uuid.uuid4().hex[:6]}"
    settings, env = scorer_env(tag, a, infra)
    await create_topics(settings, partitions=PARTITIONS)
    env.update(
        GALLERYRANK_DEVICE=a.device, GALLERYRANK_DECODE_PATH=path,
        GALLERYRANK_BACKEND="torch-fp16" if a.device.startswith("cuda") else "onnxruntime",
    )  # fmt: skip
    consumers = Consumers(1, env, a.python)
    pid = consumers.procs[0].pid
    spy = None
    try:
        started = time.monotonic()
        while consumers.ready_count() < 1:
            if time.monotonic() - started > a.start_timeout:
                raise TimeoutError(f"consumer not ready after {a.start_timeout} s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(a.settle)
        photos = infra["photos"]
        hotels = max(1, a.events // 12)
        events = [
            upserted(f"h{i % hotels}", f"i{i}", f"{infra['images']}/{photos[i % len(photos)]}") for i in range(a.events)
        ]
        checker = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group_id,
                                   enable_auto_commit=False)  # fmt: skip
        await checker.start()
        partitions = [TopicPartition(settings.topic, p) for p in range(PARTITIONS)]
        raw = Path(infra["work"]) / f"pyspy-{path}.txt"
        spy = subprocess.Popen(
            [a.py_spy, "record", "--pid", str(pid), "--threads", "--full-filenames", "--format", "raw",
             "--rate", str(a.rate), "--nonblocking", "--output", str(raw)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy attached
        cpu0, group0, main0 = thread_cpu(pid), group_cpu_s({pid}), process_cpu(pid)
        t0 = time.monotonic()
        publisher = asyncio.create_task(publish(settings, events))
        deadline = t0 + a.run_timeout
        done = 0
        while done < a.events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{a.events} committed after {a.run_timeout} s")
            done = await committed_total(checker, partitions)
            await asyncio.sleep(0.05)
        seconds = time.monotonic() - t0
        cpu1, group1, main1 = thread_cpu(pid), group_cpu_s({pid}), process_cpu(pid)
        await publisher
        await checker.stop()
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            err = b"py-spy did not stop"
        samples = parse_raw(raw.read_text()) if raw.exists() else {}
        if a.keep_raw and raw.exists():
            Path(a.keep_raw).mkdir(parents=True, exist_ok=True)
            shutil.copy(raw, Path(a.keep_raw) / raw.name)
        if not samples:
            print(f"py-spy gave no samples: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
        workers_s = (group1 - group0) - (main1 - main0)
        stages = attribute(cpu0, cpu1, samples, workers_s, a.events)
        row = {
            "path": path, "events": a.events, "events_per_s": a.events / seconds,
            "cpu_ms_per_event": 1000 * (group1 - group0) / a.events, "stages": stages,
            "samples": sum(sum(s.values()) for _, s in samples.values()), "load_avg": os.getloadavg()[0],
            "decode_path_metric": _decode_path_metric(consumers.ports[0]),
        }  # fmt: skip
        print(json.dumps(row), file=sys.stderr)
        return row
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        consumers.stop()


def _decode_path_metric(port: int) -> str:
    text = http_text(f"http://127.0.0.1:{port}/metrics", timeout=15.0) or ""
    return ", ".join(
        line.split("{", 1)[1].split("}", 1)[0]
        for line in text.splitlines()
        if line.startswith("galleryrank_decode_path{") and line.endswith(" 1.0")
    )


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    stages: list[str] = []
    for r in rows:
        stages += [s for s in r["stages"] if s not in stages]
    t = Table(title=title)
    t.add_column("CPU-ms per event")
    for r in rows:
        t.add_column(f"decode_path={r['path']}", justify="right")
    for s in stages:
        t.add_row(s, *(f"{r['stages'].get(s, 0.0):.2f}" for r in rows))
    t.add_row("[b]total (process + decode workers, /proc)[/b]", *(f"[b]{r['cpu_ms_per_event']:.2f}[/b]" for r in rows))
    t.add_row("events/s (one process)", *(f"{r['events_per_s']:,.0f}" for r in rows))
    t.add_row("py-spy samples", *(str(r["samples"]) for r in rows))
    t.add_row("load average", *(f"{r['load_avg']:.2f}" for r in rows))
    t.add_row("galleryrank_decode_path", *(r["decode_path_metric"] or "-" for r in rows))
    Console(width=160).print(t)


async def amain(a: argparse.Namespace) -> int:
    from bench.pipeline_bench import make_photos
    from galleryrank.consumer.dev.embedded import EmbeddedKafka, EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="galleryrank-prof-"))
    photos_dir = work / "photos"
    photos_dir.mkdir()
    sizes = [tuple(int(x) for x in size.split("x")) for size in a.sizes.split(",")]
    for k, (w, h) in enumerate(sizes):
        for name, body in make_photos(max(1, a.photos // len(sizes)), w, h, seed=k).items():
            (photos_dir / f"{name}-{w}x{h}.jpg").write_bytes(body)
    kafka = EmbeddedKafka().start()
    redis = EmbeddedRedis().start()
    img_port = free_port()
    img_servers = [
        subprocess.Popen([a.python, "-c", f"from bench.model_server_bench import serve_images; "
                          f"serve_images({str(photos_dir)!r}, {img_port})"], cwd=str(REPO), start_new_session=True)
        for _ in range(a.image_servers)
    ]  # fmt: skip
    rows: list[dict] = []
    try:
        infra = {
            "kafka": kafka.bootstrap_servers, "redis": redis.url, "cache": str(work / "cache"), "work": str(work),
            "images": f"http://127.0.0.1:{img_port}/images", "photos": sorted(p.name for p in photos_dir.iterdir()),
        }  # fmt: skip
        deadline = time.monotonic() + 60
        while http_text(f"{infra['images']}/{infra['photos'][0]}") is None:
            if time.monotonic() > deadline:
                raise RuntimeError("image servers did not start")
            await asyncio.sleep(0.2)
        for path in a.paths.split(","):
            try:
                rows.append(await profile_path(path, a, infra))
            except Exception as exc:  # one failed path must not lose the others (unattended GPU runs)
                print(f"decode_path={path} failed: {exc!r}", file=sys.stderr)
                rows.append({"path": path, "events": a.events, "events_per_s": 0.0, "cpu_ms_per_event": 0.0,
                             "stages": {f"failed: {str(exc)[:80]}": 0.0}, "samples": 0, "load_avg": os.getloadavg()[0],
                             "decode_path_metric": ""})  # fmt: skip
    finally:
        for p in img_servers:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        kafka.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    title = (f"Host CPU per event by stage: one consumer, {a.device}, {a.events} events of {a.sizes} JPEG over "
             f"loopback, {os.cpu_count()} cores")  # fmt: skip
    print_table(rows, title)
    if a.detail:
        for (stage, frame), n in sorted(FRAMES.items(), key=lambda kv: -kv[1])[: a.detail]:
            print(f"{n:7d}  {stage:28s} {frame}")
    out = Path(a.out) if a.out else RESULTS_DIR / f"stage_profile_{a.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"title": title, "args": vars(a), "rows": rows}, indent=2)
    out.write_text(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / out.name).write_text(text)
    return 0 if all(r["samples"] for r in rows) else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--paths", default="cpu,nvimgcodec-cpu", help="decode_path values, one profile each")
    p.add_argument("--events", type=int, default=400)
    p.add_argument("--photos", type=int, default=8)
    p.add_argument("--sizes", default="1600x1200", help="comma-separated WxH of the photos")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--download-concurrency", type=int, default=64)
    p.add_argument("--image-servers", type=int, default=1)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    p.add_argument("--out", default=None)
    p.add_argument("--keep-raw", default=None, help="copy py-spy's raw stacks into this folder")
    p.add_argument("--detail", type=int, default=0, help="also print the N frames with most samples (all paths)")
    return asyncio.run(amain(p.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
