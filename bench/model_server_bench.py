"""N consumer processes against one model server, or scoring in-process (issue 17, items 3-4).

The real service end to end: a Tansu broker, Redis, JPEG bytes (1600x1200, ~350 KB)
served over loopback HTTP by image-server processes, and N `galleryrank consume`
processes in one consumer group, each downloading, decoding and sending its
micro-batches either

* ``triton``: to one model server (``galleryrank model-server``: PyTriton's tritonserver
  with dynamic batching; GALLERYRANK_MODEL_SERVER=grpc://...), or
* ``in-process``: to its own model (onnxruntime on a CPU; torch fp16 + GPU decode on CUDA);
  ``in-process:<decode_path>`` forces the decoder (``in-process:nvjpeg``, ``in-process:hardware``).

Per (mode, N): a fresh topic (16 partitions) and group; the N processes start and
join first, then E events are published, and the rate is taken between 10 % and
90 % of the events committed (durable in Redis), so start-up and the tail do not
count. Printed per row: events/s, CPU-ms per event of the consumers and of the
model server (utime+stime from /proc/<pid>/stat, from the first event published to
the last committed: scorers decode ahead of the model, so a 10-90 % window would miss
much of the decode of a short run), the mean batch the model ran (server: Triton's nv_inference_count / nv_inference_exec_count;
in-process: galleryrank_batch_size from each consumer's /metrics), the load average.

    python -m bench.model_server_bench --quick                      # this 2-core machine: N = 1, 2
    python -m bench.model_server_bench --device cuda --processes 1,2,4,8,16 --events 20000   # bench/gpu.sh
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
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PARTITIONS = 16
RESULTS_DIR = REPO / "bench" / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def group_cpu_s(pgids: set[int]) -> float:
    """utime+stime of every live process in these process groups (a server and its tritonserver)."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) in pgids:  # field 5 (pgrp) is index 2 after the comm
            # utime + stime, + cutime + cstime: decode workers that ended (recycled) count too
            total += sum(int(x) for x in fields[11:15]) / CLK_TCK
    return total


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only: never a proxy


def http_text(url: str, timeout: float = 2.0) -> str | None:
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.read().decode("utf-8", "replace")
    except Exception:
        return None


def metric_sum(text: str | None, name: str) -> float:
    if not text:
        return 0.0
    return sum(float(m.group(1)) for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


def free_port() -> int:
    from galleryrank.consumer.dev.embedded import free_port as fp

    return fp()


def serve_images(folder: str, port: int) -> None:
    """Child process: serve every file of `folder` at /images/<name>, on a SO_REUSEPORT socket."""
    from aiohttp import web

    images = {p.name: p.read_bytes() for p in Path(folder).iterdir()}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=images[request.match_info["name"]], content_type="image/jpeg")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/images/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        await asyncio.Event().wait()

    asyncio.run(main())


class Consumers:
    """N `galleryrank consume` processes, each in its own process group."""

    def __init__(self, n: int, env: dict[str, str], python: str):
        self.ports = [free_port() for _ in range(n)]
        self.procs = []
        self.logs = []
        for i, port in enumerate(self.ports):
            e = dict(env, GALLERYRANK_METRICS_PORT=str(port), GALLERYRANK_CLIENT_ID=f"bench-{i}")
            out = tempfile.TemporaryFile()
            self.logs.append(out)
            self.procs.append(
                subprocess.Popen(
                    [python, "-m", "galleryrank", "consume"], env=e, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=str(REPO),
                )
            )  # fmt: skip

    def pgids(self) -> set[int]:
        return {p.pid for p in self.procs}

    def ready_count(self) -> int:
        """How many answer /readyz 200 (model loaded, Redis answered, partitions assigned)."""
        ready = 0
        for p, port in zip(self.procs, self.ports):
            if p.poll() is not None:
                self.logs[self.procs.index(p)].seek(0)
                raise RuntimeError(f"consumer exited {p.returncode}: {self.logs[self.procs.index(p)].read()[-3000:]!r}")
            ready += http_text(f"http://127.0.0.1:{port}/readyz") is not None
        return ready

    def batch_mean(self) -> float:
        # A busy scorer's event loop may take seconds to answer: a short timeout read as 0 on the H200.
        texts = [http_text(f"http://127.0.0.1:{port}/metrics", timeout=15.0) for port in self.ports]
        s = sum(metric_sum(t, "galleryrank_batch_size_sum") for t in texts)
        c = sum(metric_sum(t, "galleryrank_batch_size_count") for t in texts)
        return s / c if c else 0.0

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


class ModelServer:
    def __init__(self, repository: Path, python: str, threads: int | None, device: str):
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.url = f"grpc://127.0.0.1:{self.grpc_port}"
        backend = "torch-fp16" if device.startswith("cuda") else "onnxruntime"
        args = [
            python, str(REPO / "models" / "model_server.py"), "--repository", str(repository),
            "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
            "--metrics-port", str(self.metrics_port), "--backend", backend, "--device", device,
            "--preferred-batch-sizes", "16,32,64,128", "--queue-delay-us", "2000",
        ]  # fmt: skip
        if threads:
            args += ["--threads", str(threads)]
        self.log = tempfile.NamedTemporaryFile(prefix="model-server-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while b'"ready": true' not in Path(self.log.name).read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"model server did not start: {Path(self.log.name).read_text()[-3000:]}")
            time.sleep(0.5)

    def counts(self) -> tuple[float, float]:
        text = http_text(f"http://127.0.0.1:{self.metrics_port}/metrics")
        return metric_sum(text, "nv_inference_count"), metric_sum(text, "nv_inference_exec_count")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        os.unlink(self.log.name)


async def committed_total(consumer, partitions) -> int:
    total = 0
    for tp in partitions:
        total += await consumer.committed(tp) or 0
    return total


def scorer_env(tag: str, a: argparse.Namespace, infra: dict) -> tuple[Any, dict[str, str]]:
    """Settings of one benchmark run (its own topics, group and namespace) and the environment
    of the scorer processes that run it (this process's env without GALLERYRANK_* settings)."""
    from galleryrank.consumer.settings import Settings

    settings = Settings(
        bootstrap_servers=infra["kafka"], redis_url=infra["redis"], topic=f"bench-{tag}",
        dlq_topic=f"bench-{tag}.dlq", group_id=f"bench-{tag}", namespace=f"bench-{tag}",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    env.update(
        GALLERYRANK_BOOTSTRAP_SERVERS=settings.bootstrap_servers, GALLERYRANK_REDIS_URL=settings.redis_url,
        GALLERYRANK_TOPIC=settings.topic, GALLERYRANK_DLQ_TOPIC=settings.dlq_topic,
        GALLERYRANK_GROUP_ID=settings.group_id, GALLERYRANK_NAMESPACE=settings.namespace,
        GALLERYRANK_DOWNLOAD_ALLOW_NETWORKS="127.0.0.0/8", GALLERYRANK_SESSION_TIMEOUT_MS="6000",
        GALLERYRANK_BATCH_SIZE=str(a.batch_size), GALLERYRANK_DOWNLOAD_CONCURRENCY=str(a.download_concurrency),
        GALLERYRANK_LOG_LEVEL="WARNING", GALLERYRANK_MODEL_CACHE_DIR=infra["cache"],
    )  # fmt: skip
    return settings, env


async def run_one(mode: str, n: int, a: argparse.Namespace, infra: dict, server: ModelServer | None) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from galleryrank.consumer.stream.kafka import create_topics
    from galleryrank.consumer.stream.produce import publish, upserted

    tag = f"{mode.replace(':', '-')}-{n}-{uuid.uuid4().hex[:6]}"
    settings, env = scorer_env(tag, a, infra)
    await create_topics(settings, partitions=PARTITIONS)
    env.update(
        OMP_NUM_THREADS=str(a.model_threads or max(1, (os.cpu_count() or 2) // n)),
        GALLERYRANK_DECODE_WORKERS=str(max(1, (os.cpu_count() or 2) // n)),  # the host's cores, shared by N
    )  # fmt: skip
    if mode == "triton":
        env["GALLERYRANK_MODEL_SERVER"] = server.url
        # A CPU model server on a shared 2-core machine answers a batch in seconds, not ms.
        env["GALLERYRANK_MODEL_SERVER_TIMEOUT_S"] = "10" if a.device.startswith("cuda") else "60"
        env["GALLERYRANK_DEVICE"] = "cpu"
    else:
        env["GALLERYRANK_DEVICE"] = a.device
        env["GALLERYRANK_BACKEND"] = "torch-fp16" if a.device.startswith("cuda") else "onnxruntime"
        if ":" in mode:  # in-process:<decode_path>: today's nvjpeg vs the hardware decoder, in one run
            env["GALLERYRANK_DECODE_PATH"] = mode.split(":", 1)[1]
    consumers = Consumers(n, env, a.python)
    try:
        t_start = time.monotonic()
        while (ready := consumers.ready_count()) < n:
            if time.monotonic() - t_start > a.start_timeout:
                raise TimeoutError(f"{ready} of {n} consumers ready after {a.start_timeout} s")
            await asyncio.sleep(0.5)
        await asyncio.sleep(a.settle)  # the group's last rebalance
        startup_s = time.monotonic() - t_start
        photos = infra["photos"]
        hotels = max(1, a.events // 12)
        events = [
            upserted(f"h{i % hotels}", f"i{i}", f"{infra['images']}/{photos[i % len(photos)]}") for i in range(a.events)
        ]
        checker = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=settings.group_id,
                                   enable_auto_commit=False)  # fmt: skip
        await checker.start()
        partitions = [TopicPartition(settings.topic, p) for p in range(PARTITIONS)]
        server_counts0 = server.counts() if server else (0.0, 0.0)
        pg_consumers, pg_server = consumers.pgids(), ({server.proc.pid} if server else set())
        cpu0 = (group_cpu_s(pg_consumers), group_cpu_s(pg_server))
        publisher = asyncio.create_task(publish(settings, events))
        marks: dict[float, tuple[float, float, float]] = {}
        deadline = time.monotonic() + a.run_timeout
        done = 0
        while done < a.events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{a.events} committed after {a.run_timeout} s")
            done = await committed_total(checker, partitions)
            for frac in (0.1, 0.9):
                if frac not in marks and done >= frac * a.events:
                    marks[frac] = (time.monotonic(), group_cpu_s(pg_consumers), group_cpu_s(pg_server))
            await asyncio.sleep(0.05)
        cpu1 = (group_cpu_s(pg_consumers), group_cpu_s(pg_server))
        await publisher
        await checker.stop()
        (t1, _, _), (t9, _, _) = marks[0.1], marks[0.9]
        window_events = 0.8 * a.events
        decode_path = ""
        if server:
            count, execs = (x - y for x, y in zip(server.counts(), server_counts0))
            batch = count / execs if execs else 0.0
        else:
            batch = consumers.batch_mean()
            # which decoder the consumers really ran (a forced path that cannot run falls back)
            text = http_text(f"http://127.0.0.1:{consumers.ports[0]}/metrics", timeout=15.0) or ""
            decode_path = ", ".join(
                line.split("{", 1)[1].split("}", 1)[0]
                for line in text.splitlines()
                if line.startswith("galleryrank_decode_path{") and line.endswith(" 1.0")
            )
        row = {
            "mode": mode, "processes": n, "events": a.events,
            "events_per_s": window_events / (t9 - t1) if t9 > t1 else float("nan"),
            "consumer_cpu_ms_per_event": 1000 * (cpu1[0] - cpu0[0]) / a.events,
            "server_cpu_ms_per_event": 1000 * (cpu1[1] - cpu0[1]) / a.events if server else None,
            "mean_batch": batch, "startup_s": startup_s, "load_avg": os.getloadavg()[0],
            "decode_path": decode_path,
        }  # fmt: skip
        log(json.dumps(row))
        return row
    finally:
        consumers.stop()


def print_table(rows: list[dict], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in ("mode", "processes", "events/s", "consumer CPU-ms/event", "server CPU-ms/event", "mean batch",
                "start s", "load avg"):  # fmt: skip
        t.add_column(col, justify="right" if col != "mode" else "left")
    for r in rows:
        if "skipped" in r:
            t.add_row(r["mode"], str(r["processes"]), f"skipped: {r['skipped']}", "", "", "", "", "")
            continue
        srv = r["server_cpu_ms_per_event"]
        t.add_row(
            r["mode"], str(r["processes"]), f"{r['events_per_s']:,.0f}", f"{r['consumer_cpu_ms_per_event']:.2f}",
            "-" if srv is None else f"{srv:.2f}", f"{r['mean_batch']:.1f}", f"{r['startup_s']:.0f}",
            f"{r['load_avg']:.2f}",
        )  # fmt: skip
    Console(width=140).print(t)


async def amain(a: argparse.Namespace) -> int:
    from galleryrank.consumer.dev.embedded import EmbeddedKafka, EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="galleryrank-msb-"))
    photos_dir = work / "photos"
    photos_dir.mkdir()
    from bench.pipeline_bench import make_photos

    sizes = [tuple(int(x) for x in size.split("x")) for size in a.sizes.split(",")]
    for k, (w, h) in enumerate(sizes):  # the photos spread over the sizes (1600x1200 and 2880x1920 on a GPU)
        for name, body in make_photos(max(1, a.photos // len(sizes)), w, h, seed=k).items():
            (photos_dir / f"{name}-{w}x{h}.jpg").write_bytes(body)
    kafka = EmbeddedKafka().start()  # before the image port is chosen: free_port() could hand out the same one
    redis = EmbeddedRedis().start()
    img_port = free_port()
    img_servers = [
        subprocess.Popen([a.python, "-c", f"from bench.model_server_bench import serve_images; "
                          f"serve_images({str(photos_dir)!r}, {img_port})"], cwd=str(REPO), start_new_session=True)
        for _ in range(a.image_servers)
    ]  # fmt: skip
    rows: list[dict] = []
    server = None
    try:
        infra = {
            "kafka": kafka.bootstrap_servers, "redis": redis.url, "cache": str(work / "cache"),
            "images": f"http://127.0.0.1:{img_port}/images", "photos": sorted(p.name for p in photos_dir.iterdir()),
        }  # fmt: skip
        deadline = time.monotonic() + 60
        while http_text(f"{infra['images']}/{infra['photos'][0]}") is None:
            if time.monotonic() > deadline or any(p.poll() is not None for p in img_servers):
                raise RuntimeError(f"image servers did not start: {[p.poll() for p in img_servers]}")
            await asyncio.sleep(0.2)
        modes = a.modes.split(",")
        skip_triton = a.triton_skip_reason
        if "triton" in modes and not skip_triton:
            try:
                python = a.server_python or _server_python()
                from galleryrank.models.triton import TritonConfig, write_repository

                kind = "KIND_GPU" if a.device.startswith("cuda") else "KIND_CPU"
                repo = work / "triton"
                write_repository(None, repo, TritonConfig(instance_kind=kind, preferred_batch_sizes=(16, 32, 64, 128)))
                server = ModelServer(repo, python, a.server_threads, a.device)
            except Exception as exc:  # no pytriton here (e.g. the GPU machine): still measure in-process
                skip_triton = f"{type(exc).__name__}: {str(exc)[:160]}"
                log(f"triton rows skipped: {skip_triton}")
        for mode in modes:
            for n in [int(x) for x in a.processes.split(",")]:
                if mode == "triton" and skip_triton:
                    rows.append({"mode": mode, "processes": n, "skipped": skip_triton})
                    continue
                try:
                    rows.append(await run_one(mode, n, a, infra, server if mode == "triton" else None))
                except Exception as exc:  # one failed row must not lose the others (unattended GPU runs)
                    log(f"{mode} x {n} failed: {exc!r}")
                    rows.append({"mode": mode, "processes": n, "skipped": f"failed: {str(exc)[:200]}"})
                save(rows, a)
    finally:
        if server:
            server.stop()
        for p in img_servers:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        kafka.stop()
        redis.stop()
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, title_of(a))
    log(f"wrote {save(rows, a)}")
    return 0


def title_of(a: argparse.Namespace) -> str:
    return (f"N consumer processes vs one model server, {a.device}, {a.events} events of {a.sizes} JPEG "
            f"over loopback, {os.cpu_count()} cores")  # fmt: skip


def save(rows: list[dict], a: argparse.Namespace) -> Path:
    """After every row: an unattended run cut short by its time limit still leaves its rows."""
    name = f"model_server_{a.device.split(':')[0]}.json"
    out = Path(a.out) if a.out else RESULTS_DIR / name
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"title": title_of(a), "args": vars(a), "rows": rows}, indent=2)
    out.write_text(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / name).write_text(text)
    return out


def _server_python() -> str:
    from galleryrank.consumer.cli.model_server import server_python

    return server_python()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="this 2-core machine: 240 events, N = 1, 2")
    p.add_argument("--device", default="cpu", help="cpu or cuda (in-process mode and the model server)")
    p.add_argument("--modes", default="triton,in-process")
    p.add_argument("--processes", default="1,2")
    p.add_argument("--events", type=int, default=None, help="per row (default 2000; quick 240)")
    p.add_argument("--photos", type=int, default=16, help="distinct JPEGs, spread over --sizes")
    p.add_argument("--sizes", default="1600x1200", help="comma-separated WxH of the photos")
    p.add_argument("--batch-size", type=int, default=32, help="GALLERYRANK_BATCH_SIZE of each consumer")
    p.add_argument("--download-concurrency", type=int, default=32)
    p.add_argument("--model-threads", type=int, default=0, help="OMP threads per consumer (default cores / N)")
    p.add_argument("--server-threads", type=int, default=None, help="ONNX Runtime threads in the model server")
    p.add_argument("--server-python", default=None, help="Interpreter with nvidia-pytriton (default: as model-server)")
    p.add_argument("--image-servers", type=int, default=None, help="image-server processes (default cores / 4)")
    p.add_argument("--python", default=sys.executable, help="Interpreter of the consumers")
    p.add_argument("--settle", type=float, default=4.0, help="seconds after all consumers are ready")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--run-timeout", type=float, default=300.0)
    p.add_argument("--triton-skip-reason", default=None, help="skip the triton rows, saying why")
    p.add_argument("--out", default=None, help="JSON results (default bench/results/model_server_<device>.json)")
    a = p.parse_args(argv)
    a.events = a.events or (240 if a.quick else 2000)
    a.image_servers = a.image_servers or max(1, (os.cpu_count() or 2) // 4)
    return asyncio.run(amain(a))


if __name__ == "__main__":
    sys.exit(main())
