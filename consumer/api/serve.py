"""`galleryrank serve`: the read API and the gallery page.

Endpoints (all read-only):

- ``GET /hotels/{hotel_id}/gallery`` -> the gallery document exactly as stored
  in Redis (docs/architecture.md "Redis (output)"), byte for byte; 404 JSON when absent.
- ``GET /hotels?q=<prefix>&limit=<n>`` -> ``{"namespace", "hotels", "truncated"}``:
  sorted hotel ids starting with the prefix, for the page's search box; one
  ``ZRANGEBYLEX ... LIMIT`` on the sorted-set hotel index (consumer/state/hotel_index.py):
  O(log n + limit) whatever the number of hotels.
- ``GET /hotels/{hotel_id}/images/{image_id}/cam.png?area=<name>`` -> the image
  with its Class Activation Map for ``area`` (default: the predicted area) on top.
  The image URL is taken from the stored gallery, never from the request, and is
  downloaded under the scorer's own rules (consumer/images/download.py: no private
  addresses, capped size and time) and decoded in a killable worker process under
  the scorer's CPU and memory budgets (consumer/images/decode_pool.py). Overlays
  are cached (LRU, ``CAM_CACHE_BYTES``), concurrent requests for one overlay share
  one render, at most ``CAM_CONCURRENCY`` renders run at once with at most
  ``CAM_MAX_WAITING`` waiting (more: 503 + Retry-After), and each request has
  ``CAM_TIME_BUDGET_S`` (then 504): serve's memory and CPU stay bounded under load.
- ``GET /healthz`` -> 200 when Redis answers, else 503.
- The review API (consumer/api/review.py, docs/labelling.md): authenticated writes (area labels,
  ratings, editors' pins and hides, each published as an event) and ``GET /review/queue``.
  The read endpoints above need no token and are unchanged.
- ``GET /`` -> the gallery page (consumer/api/static/, no build step, no CDN).

Every data endpoint takes ``?namespace=``; without it the namespace is
``settings.namespace`` or, unset, the active one (``GET galleryrank:active``,
absent = ``live``), read on every request so a blue/green switch shows at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..ids import ID_RULE, valid_id
from ..interfaces import RedisClient
from ..settings import Settings
from ..state import hotel_index, keys
from ..state.namespace import active_namespace, is_valid_name

if TYPE_CHECKING:
    from ..images.decode_pool import DecodePool
    from ..images.download import ImageDownloader

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
SEARCH_LIMIT_DEFAULT = 50
SEARCH_LIMIT_MAX = 500
SEARCH_PREFIX_MAX_CHARS = 128
# CAM overlays: what a small API pod can afford (each render holds one downloaded body
# of up to download_max_bytes and runs the model on one thread).
CAM_CONCURRENCY = 2
CAM_MAX_WAITING = 8
CAM_TIME_BUDGET_S = 20.0
CAM_CACHE_BYTES = 32 << 20

REDIS_KEY: web.AppKey[RedisClient] = web.AppKey("redis")
SETTINGS_KEY = web.AppKey("settings", Settings)


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps({"error": error, "detail": detail}), content_type="application/json"
    )


async def resolve_namespace(request: web.Request) -> str:
    """?namespace= > settings.namespace > GET galleryrank:active > 'live'."""
    asked = request.query.get("namespace") or request.app[SETTINGS_KEY].namespace
    if asked:
        if not is_valid_name(asked):  # the settings' rule (state/namespace.py)
            raise web.HTTPBadRequest(
                text=orjson.dumps({"error": "bad_namespace", "detail": asked[:80]}).decode(),
                content_type="application/json",
            )
        return asked
    return await active_namespace(request.app[REDIS_KEY])


def _checked_ids(request: web.Request, *names: str) -> list[str]:
    """The path's ids, each checked by the event parser's rule (consumer/ids.py); 400 otherwise."""
    values = [request.match_info[n] for n in names]
    for name, value in zip(names, values):
        if not valid_id(value):
            raise web.HTTPBadRequest(
                text=orjson.dumps({"error": f"bad_{name}", "detail": f"{name} must be {ID_RULE}"}).decode(),
                content_type="application/json",
            )
    return values


async def gallery(request: web.Request) -> web.Response:
    namespace = await resolve_namespace(request)
    (hotel_id,) = _checked_ids(request, "hotel_id")
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
    if len(prefix) > SEARCH_PREFIX_MAX_CHARS:
        return _error(400, "bad_query", f"q is longer than {SEARCH_PREFIX_MAX_CHARS} characters")
    after = request.query.get("after", "")  # paging: the last id of the previous page
    if len(after) > SEARCH_PREFIX_MAX_CHARS:
        return _error(400, "bad_query", f"after is longer than {SEARCH_PREFIX_MAX_CHARS} characters")
    found, truncated = await hotel_index.search(request.app[REDIS_KEY], namespace, prefix, limit, after=after)
    body = {"namespace": namespace, "hotels": found, "truncated": truncated}
    if truncated and found:
        body["next"] = found[-1]  # pass as ?after= for the next page
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[REDIS_KEY].ping()  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    except Exception as exc:  # any Redis failure means this reader cannot serve
        return _error(503, "redis_unavailable", f"{type(exc).__name__}: {exc}"[:200])
    return web.json_response({"status": "ok"})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------- #
# CAM overlays
# --------------------------------------------------------------------------- #
class CamBusy(Exception):
    """More CAM requests are waiting than CAM_MAX_WAITING."""


class CamRenderer:
    """Downloads an image safely and draws its area CAM; the model loads on first use.

    Bounded on every axis (see the module docstring): a cache of finished overlays,
    one render per distinct overlay however many ask for it, a cap on renders at
    once and on requests waiting, a time budget per request. The image is decoded
    in a killable worker process; model work runs on one dedicated thread, so it
    never blocks the event loop and one torch call at a time keeps a small API
    pod's CPU predictable.
    """

    def __init__(
        self,
        settings: Settings,
        load_model: Callable[[], Any],
        build_tools: Callable[[], tuple[ImageDownloader, DecodePool]],
    ) -> None:
        """``load_model`` (run on the CAM thread) and ``build_tools`` (downloader, decode pool)
        come from the composition root (runtime.load_cam_model / build_cam_tools); both are
        called on the first CAM request, so `serve` starts without torch."""
        self._settings = settings
        self._load_model = load_model
        self._build_tools = build_tools
        self._scoring_model: Any | None = None  # models.ScoringModel
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cam")
        self._downloader: ImageDownloader | None = None
        self._decoder: DecodePool | None = None
        self._slots = asyncio.Semaphore(CAM_CONCURRENCY)
        self._waiting = 0
        self._inflight: dict[tuple, asyncio.Future] = {}
        self._cache: OrderedDict[tuple, tuple[bytes, str, float]] = OrderedDict()
        self._cache_bytes = 0
        self.renders = 0  # renders actually run (tests: a cached or shared overlay is not rendered again)

    async def _model(self):
        async with self._lock:
            if self._scoring_model is None:
                loop = asyncio.get_running_loop()
                self._scoring_model = await loop.run_in_executor(self._executor, self._load_model)
            if self._downloader is None:
                downloader, self._decoder = self._build_tools()
                await downloader.start()
                self._downloader = downloader
        return self._scoring_model

    async def render(self, url: str, area: str | None) -> tuple[bytes, str, float]:
        """(PNG bytes, area drawn, model probability of that area).

        Raises DownloadError/DecodeError/ValueError (unknown area), CamBusy, TimeoutError.
        """
        scoring = await self._model()
        if area is not None and area not in scoring.areas:
            raise ValueError(f"unknown area {area!r}; this model has {', '.join(scoring.areas)}")
        key = (url, area or "", scoring.model_version)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        shared = self._inflight.get(key)
        if shared is None:
            if self._waiting >= CAM_MAX_WAITING:
                raise CamBusy(f"{self._waiting} overlays are already waiting")
            self._waiting += 1  # until its render gets a slot (_render_once)
            shared = asyncio.ensure_future(self._render_once(key, scoring, url, area))
            self._inflight[key] = shared
            shared.add_done_callback(lambda _: self._inflight.pop(key, None))
        async with asyncio.timeout(CAM_TIME_BUDGET_S):
            # shield: one impatient client must not cancel the render the others wait for
            return await asyncio.shield(shared)

    async def _render_once(self, key: tuple, scoring, url: str, area: str | None) -> tuple[bytes, str, float]:
        from galleryrank.models.cam import OVERLAY_MAX_SIDE

        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            assert self._downloader is not None and self._decoder is not None  # set by _model()
            async with asyncio.timeout(CAM_TIME_BUDGET_S):
                data = await self._downloader.fetch(url)
                img = await self._decoder.overlay_rgb(data, OVERLAY_MAX_SIDE)
                del data
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._executor, self._draw, scoring, img, area)
        finally:
            self._slots.release()
        self.renders += 1
        self._remember(key, result)
        return result

    def _remember(self, key: tuple, result: tuple[bytes, str, float]) -> None:
        size = len(result[0])
        if size > CAM_CACHE_BYTES // 4:
            return
        self._cache[key] = result
        self._cache_bytes += size
        while self._cache_bytes > CAM_CACHE_BYTES:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= len(old[0])

    def _draw(self, scoring, img, area: str | None) -> tuple[bytes, str, float]:
        import io

        from galleryrank.models.cam import class_activation_maps, overlay, upsample
        from galleryrank.models.preprocess import preprocess_image

        model = scoring.torch_module()
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
        if self._decoder is not None:
            self._decoder.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


CAM_KEY = web.AppKey("cam", CamRenderer)


async def cam_png(request: web.Request) -> web.Response:
    from ..images.decode import DecodeError
    from ..images.download import DownloadError

    namespace = await resolve_namespace(request)
    hotel_id, image_id = _checked_ids(request, "hotel_id", "image_id")
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
    except CamBusy as exc:
        response = _error(503, "busy", str(exc))
        response.headers["Retry-After"] = "1"
        return response
    except TimeoutError:
        return _error(504, "timeout", f"the overlay took longer than {CAM_TIME_BUDGET_S:g} s")
    return web.Response(
        body=png,
        content_type="image/png",
        headers={"X-Cam-Area": area, "X-Cam-Probability": f"{prob:.3f}", "Cache-Control": "private, max-age=300"},
    )


# --------------------------------------------------------------------------- #
# App and command
# --------------------------------------------------------------------------- #
def create_app(
    settings: Settings, redis: RedisClient | None = None, scoring_model: Any | None = None
) -> web.Application:
    """The aiohttp app; ``redis``/``scoring_model`` are injected by tests, else made from settings."""
    app = web.Application()
    app[SETTINGS_KEY] = settings
    own_redis = redis is None
    if redis is None:
        from ..runtime import redis_client

        redis = redis_client(settings)
    app[REDIS_KEY] = redis
    from .. import runtime

    load = (lambda: scoring_model) if scoring_model is not None else (lambda: runtime.load_cam_model(settings))
    app[CAM_KEY] = CamRenderer(settings, load, lambda: runtime.build_cam_tools(settings, CAM_CONCURRENCY))
    from . import review, review_queue

    review.add_routes(app, settings, redis, resolve_namespace, _checked_ids)
    review_queue.add_routes(app)

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


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access lines without query strings or headers: a token sent where it must not be (a URL)
    is refused by the review API and never written to the log either."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "%s %s %s %d %.1fms", request.remote, request.method, request.path, response.status, time * 1e3
        )


def run(settings: Settings) -> None:
    """Serve until interrupted (the `galleryrank serve` command; consumer/cli/serve.py)."""
    # Access lines only at DEBUG: a busy read API would drown the service's own log.
    access_log = logging.getLogger("aiohttp.access") if settings.log_level.upper() == "DEBUG" else None
    web.run_app(
        create_app(settings),
        host=settings.serve_host,
        port=settings.serve_port,
        print=None,
        access_log=access_log,
        access_log_class=PathOnlyAccessLogger,
    )
