"""/metrics, /healthz and /readyz on the metrics port (aiohttp, same event loop).

healthz: the main loop iterated recently (a wedged loop fails it, so the
orchestrator restarts the pod). readyz: partitions assigned and model loaded.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import REGISTRY

# 60 s: longer than any single getmany (0.2 s) + a revoke drain (20 s).
HEALTHY_LOOP_AGE_S = 60.0


async def start_health_server(
    host: str, port: int, last_loop_at: Callable[[], float], ready: Callable[[], bool]
) -> web.AppRunner:
    async def metrics_handler(_):
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_):
        age = time.monotonic() - last_loop_at()
        if age > HEALTHY_LOOP_AGE_S:
            return web.json_response({"ok": False, "loop_age_s": age}, status=503)
        return web.json_response({"ok": True, "loop_age_s": round(age, 3)})

    async def readyz(_):
        ok = ready()
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
