"""`galleryrank serve`: the read API and the gallery page.

Endpoints (all read-only):

- ``GET /hotels/{hotel_id}/gallery`` -> the gallery document exactly as stored
  in Redis (design.md "Redis (output)"), byte for byte; 404 JSON when absent.
- ``GET /hotels?q=<prefix>&limit=<n>`` -> ``{"namespace", "hotels", "truncated"}``:
  sorted hotel ids starting with the prefix, for the page's search box.
- ``GET /hotels/{hotel_id}/images/{image_id}/cam.png?area=<name>`` -> the image
  with its Class Activation Map for ``area`` (default: the predicted area) on top.
  The image URL is taken from the stored gallery, never from the request, and is
  downloaded under the scorer's own rules (consumer/images/download.py: no private
  addresses, capped size and time).
- ``GET /healthz`` -> 200 when Redis answers, else 503.
- ``GET /`` -> the gallery page (consumer/api/static/, no build step, no CDN).

Every data endpoint takes ``?namespace=``; without it the namespace is
``settings.namespace`` or, unset, the active one (``GET galleryrank:active``,
absent = ``live``), read on every request so a blue/green switch shows at once.
"""

from __future__ import annotations

import asyncio
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiohttp import web

from ..settings import Settings
from ..state import keys

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SEARCH_LIMIT_DEFAULT = 50
SEARCH_LIMIT_MAX = 500
# Namespaces are written by our own tools (live, replay-<ts>, test-<tag>); anything
# else in a query string (':', '*', spaces) is refused rather than put into a key.
_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# SSCAN MATCH is a glob: these characters in a typed prefix must match literally.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

REDIS_KEY = web.AppKey("redis", aioredis.Redis)
SETTINGS_KEY = web.AppKey("settings", Settings)
CAM_KEY = web.AppKey("cam", object)


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": error, "detail": detail}), content_type="application/json"
    )


async def resolve_namespace(request: web.Request) -> str:
    """?namespace= > settings.namespace > GET galleryrank:active > 'live'."""
    asked = request.query.get("namespace") or request.app[SETTINGS_KEY].namespace
    if asked:
        if not _NAMESPACE_RE.match(asked):
            raise web.HTTPBadRequest(
                text=orjson.dumps({"error": "bad_namespace", "detail": asked[:80]}).decode(),
                content_type="application/json",
            )
        return asked
    active = await request.app[REDIS_KEY].get(keys.ACTIVE_KEY)
    return active.decode() if active else keys.DEFAULT_NAMESPACE


async def gallery(request: web.Request) -> web.Response:
    namespace = await resolve_namespace(request)
    hotel_id = request.match_info["hotel_id"]
    raw = await request.app[REDIS_KEY].get(keys.gallery_key(namespace, hotel_id))
    if raw is None:
        return _error(404, "not_found", f"no gallery for hotel {hotel_id!r} in namespace {namespace!r}")
    # The stored bytes are the contract: no parse/re-serialise round trip.
    return web.Response(
        body=raw,
        content_type="application/json",
        headers={"X-Galleryrank-Namespace": namespace, "Cache-Control": "no-cache"},
    )


async def search_hotels(request: web.Request) -> web.Response:
    namespace = await resolve_namespace(request)
    prefix = request.query.get("q", "")
    try:
        limit = min(max(int(request.query.get("limit", SEARCH_LIMIT_DEFAULT)), 1), SEARCH_LIMIT_MAX)
    except ValueError:
        return _error(400, "bad_limit", "limit must be an integer")
    pattern = _GLOB_SPECIAL.sub(r"\\\1", prefix) + "*"
    # SSCAN (not SMEMBERS): a big hotel set is walked in chunks without blocking Redis.
    found = [
        m.decode()
        async for m in request.app[REDIS_KEY].sscan_iter(keys.hotels_key(namespace), match=pattern, count=1000)
    ]
    found.sort()
    body = {"namespace": namespace, "hotels": found[:limit], "truncated": len(found) > limit}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS_KEY].ping()
    except Exception as exc:  # any Redis failure means this reader cannot serve
        return _error(503, "redis_unavailable", f"{type(exc).__name__}: {exc}"[:200])
    return web.json_response({"status": "ok"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------- #
# CAM overlays
# --------------------------------------------------------------------------- #
class CamRenderer:
    """Downloads an image safely and draws its area CAM; the model loads on first use.

    Model work runs on one dedicated thread: it never blocks the event loop, and
    one torch call at a time keeps a small API pod's CPU predictable.
    """

    def __init__(self, settings: Settings, scoring_model: Any | None = None) -> None:
        self._settings = settings
        self._scoring_model = scoring_model  # models.ScoringModel; tests pass the one they loaded
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cam")
        self._downloader = None

    async def _model(self):
        async with self._lock:
            if self._scoring_model is None:
                from galleryrank.models import load_scoring_model

                s = self._settings
                log.info("loading the model for CAM overlays (checkpoint=%s, device=%s)", s.checkpoint, s.device)
                loop = asyncio.get_running_loop()
                # backend torch: CAM needs the feature map, which only the torch module exposes.
                self._scoring_model = await loop.run_in_executor(
                    self._executor, lambda: load_scoring_model(s.checkpoint, device=s.device, backend="torch")
                )
            if self._downloader is None:
                from ..images.download import ImageDownloader

                downloader = ImageDownloader(self._settings)
                await downloader.start()
                self._downloader = downloader
        return self._scoring_model

    async def render(self, url: str, area: str | None) -> tuple[bytes, str, float]:
        """(PNG bytes, area drawn, model probability of that area); raises DownloadError/DecodeError/ValueError."""
        scoring = await self._model()
        data = await self._downloader.fetch(url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._draw, scoring, data, area)

    def _draw(self, scoring, data: bytes, area: str | None) -> tuple[bytes, str, float]:
        import io

        from galleryrank.models.cam import OVERLAY_MAX_SIDE, class_activation_maps, overlay, upsample
        from galleryrank.models.preprocess import preprocess_image

        from ..images.decode import load_oriented_rgb

        model = scoring.torch_module()
        if area is not None and area not in model.areas:
            raise ValueError(f"unknown area {area!r}; this model has {', '.join(model.areas)}")
        img, _, _ = load_oriented_rgb(data, model.input_size, self._settings.max_image_pixels)
        img.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE))
        batch = preprocess_image(img, model.input_size)[None]
        # One pass gives the maps of every area and the probabilities to pick from.
        cams, probs = class_activation_maps(model, batch, list(range(len(model.areas))))
        k = model.areas.index(area) if area is not None else int(probs[0].argmax())
        heat = upsample(cams[0, k], img.size)  # preprocessing squashes, so the map stretches back 1:1
        buf = io.BytesIO()
        # zlib level 1: measured 52 ms vs 256 ms at the default level for a 600x400 overlay, 6 % bigger.
        overlay(img, heat).save(buf, format="PNG", compress_level=1)
        return buf.getvalue(), model.areas[k], float(probs[0, k])

    async def close(self) -> None:
        if self._downloader is not None:
            await self._downloader.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


async def cam_png(request: web.Request) -> web.Response:
    from ..images.decode import DecodeError
    from ..images.download import DownloadError

    namespace = await resolve_namespace(request)
    hotel_id, image_id = request.match_info["hotel_id"], request.match_info["image_id"]
    raw = await request.app[REDIS_KEY].get(keys.gallery_key(namespace, hotel_id))
    if raw is None:
        return _error(404, "not_found", f"no gallery for hotel {hotel_id!r} in namespace {namespace!r}")
    image = next((i for i in orjson.loads(raw).get("images", []) if i.get("image_id") == image_id), None)
    if image is None:
        return _error(404, "not_found", f"hotel {hotel_id!r} shows no image {image_id!r}")
    try:
        png, area, prob = await request.app[CAM_KEY].render(image["url"], request.query.get("area") or None)
    except ValueError as exc:
        return _error(400, "bad_area", str(exc))
    except DownloadError as exc:
        return _error(502, "download_failed", str(exc)[:300])
    except DecodeError as exc:
        return _error(422, exc.reason, exc.detail[:300])
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"X-Cam-Area": area, "X-Cam-Probability": f"{prob:.3f}", "Cache-Control": "private, max-age=300"},
    )


# --------------------------------------------------------------------------- #
# App and command
# --------------------------------------------------------------------------- #
def create_app(
    settings: Settings, redis: aioredis.Redis | None = None, scoring_model: Any | None = None
) -> web.Application:
    """The aiohttp app; ``redis``/``scoring_model`` are injected by tests, else made from settings."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    own_redis = redis is None
    if own_redis:
        from ..runtime import redis_client

        redis = redis_client(settings)
    app[REDIS_KEY] = redis
    app[CAM_KEY] = CamRenderer(settings, scoring_model)

    async def _close(app: web.Application) -> None:
        await app[CAM_KEY].close()
        if own_redis:
            await app[REDIS_KEY].aclose()

    app.on_cleanup.append(_close)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/hotels", search_hotels)
    app.router.add_get("/hotels/{hotel_id}/gallery", gallery)
    app.router.add_get("/hotels/{hotel_id}/images/{image_id}/cam.png", cam_png)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
    return app


def run(settings: Settings) -> None:
    """Serve until interrupted (the `galleryrank serve` command; consumer/cli/serve.py)."""
    # Access lines only at DEBUG: a busy read API would drown the service's own log.
    access_log = logging.getLogger("aiohttp.access") if settings.log_level.upper() == "DEBUG" else None
    web.run_app(
        create_app(settings), host=settings.serve_host, port=settings.serve_port, print=None, access_log=access_log
    )
