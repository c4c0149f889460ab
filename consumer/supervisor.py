"""Several scorer processes on one host: `galleryrank consume --processes N`.

One Python process tops out at what its event-loop thread can do (the GIL;
bench/software_ceiling.py measures it), so a host with more cores, or one GPU
behind a model server, is fed by several scorer processes. Each child is a
plain `galleryrank consume` (same settings, one process) and a member of the
same consumer group: Kafka hands each one its share of the partitions, and a
rebalance moves a dead child's partitions to the others until it is back.
Kafka partitions are the unit of parallelism (docs/operations.md, "Several
scorer processes per host"): a topic needs at least as many partitions as
scorer processes on all hosts together, or the extra ones idle.

The supervisor
* starts N children (`python -m galleryrank consume --processes 1`), each with
  its own `client_id` (`<client_id>-<i>`) and metrics port (`metrics_port + 1 + i`);
* restarts a child that exits with an error or a signal, after a backoff that
  doubles from 1 s up to 30 s (reset once a child has run 60 s); a child that
  exits 0 (`stop_when_idle_s`, a drained stop) is not restarted; a child that
  exits 2 (bad configuration) stops the whole supervisor with 2;
* serves on `metrics_port` itself: `/healthz` (every child running; JSON lists
  their pids, ports and restarts), `/readyz` (every child ready, asked on its own
  port) and `/metrics` (its own: children alive, restarts per child); each child's
  scorer metrics stay on the child's port (one scrape target per child:
  no prometheus_client multiprocess mode, so Gauges keep their meaning);
* forwards SIGTERM/SIGINT to every child, waits for their drained stop (up to
  `STOP_TIMEOUT_S`, then SIGKILL), and exits 0; children get SIGTERM if the
  supervisor itself dies (Linux parent-death signal).

With N = 1 `galleryrank consume` runs the scorer in its own process, no supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings

log = logging.getLogger(__name__)

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
HEALTHY_RUN_S = 60.0  # a child that ran this long resets its backoff
STOP_TIMEOUT_S = 40.0  # > the scorer's revoke drain (20 s) + commit
EXIT_CONFIG_ERROR = 2
# Per-process budgets for "what fits the host" (deploy/README.md): a CPU scorer keeps
# ~2 cores busy (decode threads + the model) and peaks at ~1.9 GB RSS (bench/README.md);
# one with its model on a GPU in-process needs ~4 cores of decode and resize per process
# (and each holds its own CUDA context); with the model in a model server the
# event-loop thread is its one core.
CORES_PER_CPU_PROCESS = 2
CORES_PER_GPU_PROCESS = 4
CORES_PER_OFFLOADED_PROCESS = 1
MEMORY_PER_PROCESS_BYTES = 2 * 1024**3
PARTITIONS_LOOKUP_TIMEOUT_S = 10.0


# --- how many -------------------------------------------------------------------------------------
def available_cores() -> float:
    """Cores this process may use: the cgroup CPU quota if there is one, else the CPU affinity."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    return cores


def available_memory() -> int:
    """Bytes: the cgroup memory limit if there is one, else MemAvailable."""
    limit = None
    with contextlib.suppress(OSError, ValueError):
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if raw != "max":
            limit = int(raw)
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                return min(free, limit) if limit else free
    return limit or MEMORY_PER_PROCESS_BYTES


def fitting_processes(
    settings: Settings, cores: float | None = None, memory: int | None = None, partitions: int | None = None
) -> int:
    """How many scorer processes fit this host: by cores (2 each with the model on the CPU, 4 with
    it on a GPU in-process, 1 with it in a model server), by memory (2 GB each), and never more
    than the topic's partitions (a process without a partition idles); at least 1."""
    cores = available_cores() if cores is None else cores
    memory = available_memory() if memory is None else memory
    if str(settings.backend) == "triton" or getattr(settings, "model_server", None):
        per = CORES_PER_OFFLOADED_PROCESS
    elif str(settings.device).startswith("cuda"):
        per = CORES_PER_GPU_PROCESS
    else:
        per = CORES_PER_CPU_PROCESS
    n = min(int(cores // per), memory // MEMORY_PER_PROCESS_BYTES)
    if partitions:
        n = min(n, partitions)
    return max(1, n)


async def topic_partitions(settings: Settings) -> int | None:
    """The input topic's partition count from the broker; None when it cannot be known now."""
    from aiokafka import AIOKafkaConsumer

    from .stream.kafka import common_kwargs

    consumer = AIOKafkaConsumer(**common_kwargs(settings))
    try:
        async with asyncio.timeout(PARTITIONS_LOOKUP_TIMEOUT_S):
            await consumer.start()
            await consumer.topics()  # refreshes the metadata of every topic
        found = consumer.partitions_for_topic(settings.topic)
        return len(found) if found else None
    except Exception as exc:  # noqa: BLE001 - no broker yet: size by the host alone
        log.warning("could not read the partitions of %s (%s); sizing by the host only", settings.topic, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()


def resolve_processes(settings: Settings) -> int:
    """`processes`, or with 0 what fits the host and the topic (see fitting_processes)."""
    if settings.processes:
        return settings.processes
    fit = fitting_processes(settings)
    if fit == 1:
        return 1  # no need to ask the broker
    n = fitting_processes(settings, partitions=asyncio.run(topic_partitions(settings)))
    log.info("processes=0: %d scorer processes fit this host and topic", n)
    return n


# --- the children --------------------------------------------------------------------------------
def child_env(settings: Settings, index: int) -> dict[str, str]:
    """The environment of child `index`: the parent's resolved settings as GALLERYRANK_* variables
    (flags included), one process, its own client id and metrics port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALLERYRANK_")}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, (list, tuple, dict, set)):
            text = json.dumps(list(value) if isinstance(value, (tuple, set)) else value)
        else:
            text = str(value)
        env[f"GALLERYRANK_{name.upper()}"] = text
    env["GALLERYRANK_PROCESSES"] = "1"
    env["GALLERYRANK_CLIENT_ID"] = f"{settings.client_id}-{index}"
    env["GALLERYRANK_METRICS_PORT"] = str(child_metrics_port(settings, index))
    return env


def child_metrics_port(settings: Settings, index: int) -> int:
    return settings.metrics_port + 1 + index if settings.metrics_port else 0


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when the supervisor dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Child:
    index: int
    proc: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = BACKOFF_START_S
    exit_codes: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None


class Supervisor:
    def __init__(self, settings: Settings, processes: int, command: list[str] | None = None):
        self.settings = settings
        self.children = [Child(i) for i in range(processes)]
        self.command = command or [sys.executable, "-m", "galleryrank", "consume"]
        self._stopping = asyncio.Event()
        self.exit_code = 0

    async def _start(self, child: Child) -> asyncio.subprocess.Process:
        child.proc = proc = await asyncio.create_subprocess_exec(
            *self.command,
            env=child_env(self.settings, child.index),
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        child.started_at = time.monotonic()
        log.info(
            "child %d started: pid %d, metrics port %d",
            child.index,
            proc.pid,
            child_metrics_port(self.settings, child.index),
        )
        return proc

    async def _watch(self, child: Child) -> None:
        """Keep child `index` running until the supervisor stops."""
        while not self._stopping.is_set():
            proc = await self._start(child)
            code = await proc.wait()
            child.exit_codes.append(code)
            ran = time.monotonic() - child.started_at
            if self._stopping.is_set():
                return
            if code == 0:
                log.info("child %d (pid %d) finished", child.index, proc.pid)
                return
            if code == EXIT_CONFIG_ERROR:
                log.error("child %d exited with a configuration error; stopping", child.index)
                self.exit_code = EXIT_CONFIG_ERROR
                self.stop()
                return
            if ran >= HEALTHY_RUN_S:
                child.backoff_s = BACKOFF_START_S
            log.warning(
                "child %d (pid %d) exited with %d after %.1f s; restarting in %.1f s",
                child.index,
                proc.pid,
                code,
                ran,
                child.backoff_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.backoff_s)
            if self._stopping.is_set():
                return
            child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
            child.restarts += 1
            _RESTARTS.labels(child=str(child.index)).inc()

    def stop(self) -> None:
        self._stopping.set()

    async def _terminate_all(self) -> None:
        live = [c.proc for c in self.children if c.proc is not None and c.proc.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        if live:
            try:
                await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), STOP_TIMEOUT_S)
            except TimeoutError:
                for proc in live:
                    if proc.returncode is None:
                        log.warning("child pid %d did not stop in %.0f s; killing it", proc.pid, STOP_TIMEOUT_S)
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                await asyncio.gather(*(p.wait() for p in live))

    def status(self) -> list[dict]:
        return [
            {
                "index": c.index,
                "pid": c.pid,
                "metrics_port": child_metrics_port(self.settings, c.index),
                "restarts": c.restarts,
                "exit_codes": c.exit_codes[-5:],
            }
            for c in self.children
        ]

    async def run(self, install_signal_handlers: bool = True) -> int:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        health = await self._serve_health() if self.settings.metrics_port else None
        watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
        try:
            # Until stopped, or until every child finished on its own (exit 0).
            async def stopped() -> None:
                await self._stopping.wait()

            async def all_finished() -> None:
                await asyncio.gather(*watchers)

            stop_task, finished_task = asyncio.create_task(stopped()), asyncio.create_task(all_finished())
            await asyncio.wait([stop_task, finished_task], return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()  # not finished_task: cancelling it would cancel the watchers
            self.stop()
            await self._terminate_all()
            await asyncio.gather(finished_task, *watchers, return_exceptions=True)
        finally:
            if health is not None:
                await health.cleanup()
        return self.exit_code

    # --- /healthz, /readyz, /metrics of the supervisor ------------------------------------------
    async def _serve_health(self):
        from aiohttp import ClientSession, ClientTimeout, web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        async def healthz(_):
            status = self.status()
            ok = all(c["pid"] is not None for c in status)
            return web.json_response({"ok": ok, "children": status}, status=200 if ok else 503)

        async def readyz(_):
            ready = []
            async with ClientSession(timeout=ClientTimeout(total=2)) as http:
                for c in self.status():
                    try:
                        async with http.get(f"http://127.0.0.1:{c['metrics_port']}/readyz") as resp:
                            ready.append(resp.status == 200)
                    except Exception:  # noqa: BLE001 - a child not listening yet is simply not ready
                        ready.append(False)
            ok = bool(ready) and all(ready)
            return web.json_response({"ready": ok, "children": ready}, status=200 if ok else 503)

        async def metrics_handler(_):
            _ALIVE.set(sum(c.pid is not None for c in self.children))
            return web.Response(body=generate_latest(_REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics_handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self.settings.metrics_host, self.settings.metrics_port).start()
        return runner


def _supervisor_metrics():
    from prometheus_client import CollectorRegistry, Counter, Gauge

    registry = CollectorRegistry(auto_describe=True)
    alive = Gauge("galleryrank_supervisor_children_alive", "Scorer child processes running", registry=registry)
    restarts = Counter(
        "galleryrank_supervisor_restarts_total",
        "Scorer child processes restarted, by child",
        ["child"],
        registry=registry,
    )
    return registry, alive, restarts


_REGISTRY, _ALIVE, _RESTARTS = _supervisor_metrics()


def supervise(settings: Settings, processes: int) -> int:
    """Run `processes` scorer children until SIGTERM/SIGINT; the exit code for the CLI."""
    log.info("starting %d scorer processes in group %s", processes, settings.group_id)
    return asyncio.run(Supervisor(settings, processes).run())
