"""/metrics, /healthz and /readyz on the metrics port (aiohttp, same event loop).

The server starts FIRST, before Redis, Kafka or the model are reached, so probes
answer during a slow start and say what is missing:

healthz (liveness): the main loop iterated recently (a wedged loop fails it, so
the orchestrator restarts the pod); before the loop runs, the process is alive.
Its JSON names the model that runs (version, checkpoint, backend, device).
readyz: 200 ``{"ready": true}`` when the model is loaded, Redis answered,
partitions are assigned and no stage is stuck; else 503 with ``waiting``:
what is missing, by name (``redis``, ``kafka``, ``model``, ``decode``), each with
a readable reason (``"127.0.0.1:6379 unreachable: ConnectionError ..."``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import metrics
from .interfaces import ScoringBackend
from .metrics import REGISTRY

if TYPE_CHECKING:
    from .images.decode_pool import DecodePool
    from .stream.scorer import GalleryScorer

log = logging.getLogger(__name__)

# 60 s: longer than any single getmany (0.2 s) + a revoke drain (20 s).
HEALTHY_LOOP_AGE_S = 60.0


class ServiceStatus:
    """What the service still waits for, and which model it runs: the state behind the probes."""

    def __init__(self) -> None:
        self.started_at = time.monotonic()
        self.waiting: dict[str, str] = {"model": "not loaded yet", "kafka": "no partitions assigned yet"}
        self.model: dict[str, str] = {}
        self.scorer: GalleryScorer | None = None
        self.checks: list[Callable[[], tuple[str, str] | None]] = []

    def wait(self, name: str, why: str) -> None:
        self.waiting[name] = why

    def ok(self, name: str) -> None:
        self.waiting.pop(name, None)

    def model_loaded(self, model: ScoringBackend, checkpoint: str | None) -> None:
        self.model = {
            "model_version": str(getattr(model, "model_version", "?")),
            "checkpoint": checkpoint or "(shipped default)",
            "backend": str(getattr(model, "backend", "?")),
            "device": str(getattr(model, "device", "?")),
        }
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(**self.model).set(1)
        log.info(
            "scoring with model %(model_version)s, checkpoint %(checkpoint)s, %(backend)s on %(device)s", self.model
        )
        self.ok("model")

    def attach(self, scorer: GalleryScorer, pool: DecodePool | None, decode_budget_s: float) -> None:
        """Follow a built scorer (its progress: loop for liveness, assignment for readiness) and its
        decode pool (the composition root's) for readiness."""
        self.scorer = scorer
        if pool is not None:
            metrics.STAGE_OLDEST.labels(stage="decode").set_function(pool.oldest_busy_s)
            metrics.DECODE_BUSY.set_function(pool.busy)
            metrics.DECODE_KILLED.set_function(lambda: pool.killed)
            metrics.DECODE_PEAK_RSS.set_function(lambda: pool.peak_rss_bytes)

            def decode_stuck() -> tuple[str, str] | None:
                age = pool.oldest_busy_s()
                if age > decode_budget_s:
                    return "decode", f"a decode has run {age:.0f} s (CPU budget {decode_budget_s:g} s)"
                return None

            self.checks.append(decode_stuck)

    def last_loop_at(self) -> float:
        return self.scorer.progress().last_loop_at if self.scorer is not None else time.monotonic()

    def readiness(self) -> dict[str, str]:
        """Name -> why, for everything not ready; empty when ready."""
        waiting = dict(self.waiting)
        if self.scorer is not None:
            if self.scorer.progress().ready:
                waiting.pop("kafka", None)
            else:
                waiting.setdefault("kafka", "no partitions assigned yet")
        for check in self.checks:
            found = check()
            if found:
                waiting[found[0]] = found[1]
        return waiting


async def start_health_server(
    host: str,
    port: int,
    last_loop_at: Callable[[], float] | None = None,
    ready: Callable[[], bool] | None = None,
    *,
    status: ServiceStatus | None = None,
) -> web.AppRunner:
    """Serve the probes from `status` (or, older form, from two callables)."""
    if status is None:
        status = ServiceStatus()
        status.waiting.clear()
        if ready is not None:
            status.checks.append(lambda: None if ready() else ("scorer", "not ready"))
    loop_at = last_loop_at or status.last_loop_at

    async def metrics_handler(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        age = max(0.0, time.monotonic() - loop_at())
        body = {"ok": age <= HEALTHY_LOOP_AGE_S, "loop_age_s": round(age, 3), "model": status.model}
        return web.json_response(body, status=200 if body["ok"] else 503)

    async def readyz(_: web.Request) -> web.Response:
        waiting = status.readiness()
        if not waiting:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "waiting": waiting}, status=503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
