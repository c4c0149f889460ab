"""The review API: authenticated writes (labels, ratings, editors' pins and hides) and the review queue.

Every endpoint here needs an authenticated person (docs/labelling.md):

- ``Authorization: Bearer <token>`` issued by ``galleryrank reviewers add`` (state/reviewers.py);
  nothing else carries a token: a token-looking query parameter is refused (URLs end up in logs,
  browser history and Referer headers) and cookies are never read (no cookie auth, so no CSRF);
- or, when ``review_trusted_header`` is set, that header as written by an authenticating
  reverse proxy, accepted only from a peer inside ``review_trusted_proxies`` (the proxy must
  strip the header from what clients send); the person must still be an active reviewer.

Roles: ``reviewer`` may label areas and rate; ``editor`` also pins, unpins, hides, unhides.
Each person may write ``review_rate_per_minute`` times per minute (per server process).

A write publishes one event and answers only after the broker acknowledged it (acks=all):
labels to ``labels_topic``, editors' overrides to ``topic`` with ``author``. The event names the
authenticated person (``reviewer`` / ``author``), never anything from the request body, and
the photo's URL and model version as Redis holds them. The scorer applies it like any other
event (fenced, DLQ for bad ones); the gallery shows it as soon as the scorer wrote it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from ..ids import valid_id
from ..interfaces import RedisClient
from ..settings import ConfigError, Settings
from ..state import keys
from ..state.records import decode_stored
from ..state.reviewers import Reviewer, TokenChecker
from ..state.reviewers import get as get_reviewer
from ..stream.events import (
    HIDDEN,
    NOT_PROPERTY,
    PINNED,
    RATING_MAX,
    RATING_MIN,
    UNHIDDEN,
    UNPINNED,
    Event,
    GalleryPinned,
    GalleryUnpinned,
    ImageHidden,
    ImageUnhidden,
    InvalidEvent,
    LabelArea,
    LabelRating,
    encode_event,
    parse_event,
)
from ..stream.kafka import make_producer

log = logging.getLogger(__name__)

# Query parameters that would carry a credential: refused on every request to this API.
TOKEN_PARAMS = frozenset({"token", "access_token", "bearer", "auth", "authorization", "api_key", "apikey", "key"})
MAX_BODY_BYTES = 16 * 1024
FAILED_AUTH_PER_MINUTE = 20


def fail(cls: type[web.HTTPException], error: str, detail: str, **headers: str) -> web.HTTPException:
    body = orjson.dumps({"error": error, "detail": detail}).decode()
    return cls(text=body, content_type="application/json", headers=headers or None)


class RateLimiter:
    """At most ``per_minute`` writes per person in any 60 s window (in memory: per server process)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._writes: dict[str, deque[float]] = {}

    def retry_after(self, who: str, now: float | None = None, count: bool = True) -> float:
        """0 and the write is counted (unless ``count`` is False), else the seconds until one is allowed."""
        now = time.monotonic() if now is None else now
        window = self._writes.setdefault(who, deque())
        while window and window[0] <= now - 60.0:
            window.popleft()
        if not window:
            del self._writes[who]  # bounded by the people (or addresses) active in the last minute
        if len(window) >= self.per_minute:
            return max(0.1, window[0] + 60.0 - now)
        if count:
            self._writes.setdefault(who, window).append(now)
        return 0.0


class Publisher:
    """One Kafka producer for the server (acks=all), started on the first write: a read-only
    deployment of `serve` never needs the broker."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._producer: Any = None
        self._lock = asyncio.Lock()

    async def send(self, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self.settings, linger_ms=0)
                await producer.start()
                self._producer = producer
        meta = await (await self._producer.send(topic, key=key, value=value))  # the ack, acks=all
        return meta.partition, meta.offset

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


class Reviewing:
    """Authentication, rate limit and publishing for one app."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        resolve_namespace: Callable[[web.Request], Awaitable[str]],
        checked_ids: Callable[..., list[str]],
        publisher: Publisher | None = None,
    ):
        self.settings = settings
        self.resolve_namespace = resolve_namespace
        self.checked_ids = checked_ids
        self.redis = redis
        self.tokens = TokenChecker(redis)
        self.limiter = RateLimiter(settings.review_rate_per_minute)
        # A wrong secret costs a scrypt (~40 CPU-ms): a few per minute per address, then 429.
        self.failures = RateLimiter(FAILED_AUTH_PER_MINUTE)
        self.publisher = publisher or Publisher(settings)
        self.header = settings.review_trusted_header.strip()
        try:
            self.proxies = [
                ipaddress.ip_network(n.strip(), strict=False)
                for n in settings.review_trusted_proxies.split(",")
                if n.strip()
            ]
        except ValueError as exc:
            raise ConfigError(f"GALLERYRANK_REVIEW_TRUSTED_PROXIES: {exc}") from None
        if self.header and not self.proxies:
            raise ConfigError(
                "GALLERYRANK_REVIEW_TRUSTED_HEADER needs GALLERYRANK_REVIEW_TRUSTED_PROXIES "
                "(the networks of the proxy that sets it)"
            )

    def _from_proxy(self, request: web.Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(peer in net for net in self.proxies)

    async def person(self, request: web.Request, editor: bool = False) -> Reviewer:
        """The authenticated person allowed to do this; raises 401/403 otherwise."""
        if any(k.lower() in TOKEN_PARAMS or v.startswith("grv1.") for k, v in request.query.items()):
            raise fail(
                web.HTTPUnauthorized,
                "token_in_query",
                "tokens are accepted only in the Authorization header, never in the URL; revoke a token that was sent so",
            )
        auth = request.headers.get("Authorization", "")
        person: Reviewer | None = None
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise fail(web.HTTPUnauthorized, "bad_authorization", "use 'Authorization: Bearer <token>'")
            remote = request.remote or ""
            wait = self.failures.retry_after(remote, count=False)
            if wait:
                raise fail(
                    web.HTTPTooManyRequests,
                    "too_many_failures",
                    "too many refused tokens",
                    **{"Retry-After": str(int(wait) + 1)},
                )
            person = await self.tokens.authenticate(token.strip())
            if person is None:
                self.failures.retry_after(remote)
                log.info("refused a write: unknown, revoked or malformed token from %s", request.remote)
                raise fail(web.HTTPUnauthorized, "invalid_token", "the token is unknown or revoked")
        elif self.header and request.headers.get(self.header):
            if not self._from_proxy(request):
                log.warning("refused %s header from %s (not a trusted proxy)", self.header, request.remote)
                raise fail(web.HTTPUnauthorized, "untrusted_proxy", f"{self.header} is only accepted from the proxy")
            name = request.headers[self.header].strip()
            person = await get_reviewer(self.redis, name) if valid_id(name) else None
            if person is None or not person.active:
                raise fail(web.HTTPForbidden, "not_a_reviewer", f"{name[:80]!r} is not an active reviewer")
        if person is None:
            raise fail(
                web.HTTPUnauthorized,
                "unauthenticated",
                "send 'Authorization: Bearer <token>'",
                **{"WWW-Authenticate": "Bearer"},
            )
        if editor and not person.can_edit:
            raise fail(
                web.HTTPForbidden, "forbidden", f"{person.reviewer_id!r} is a {person.role}; this needs an editor"
            )
        return person

    def limit(self, person: Reviewer) -> None:
        wait = self.limiter.retry_after(person.reviewer_id)
        if wait:
            raise fail(
                web.HTTPTooManyRequests,
                "rate_limited",
                f"at most {self.limiter.per_minute} writes a minute",
                **{"Retry-After": str(int(wait) + 1)},
            )

    async def publish(self, topic: str, event: Event) -> dict[str, Any]:
        key, value = encode_event(event)
        checked = parse_event(key, value)  # what the scorer would refuse is never sent
        if isinstance(checked, InvalidEvent):
            raise fail(web.HTTPBadRequest, checked.reason, checked.detail)
        try:
            partition, offset = await self.publisher.send(topic, key, value)
        except Exception as exc:  # the broker: the write did not happen, the client may retry
            log.warning("could not publish %s: %s", event.event_id, type(exc).__name__)
            raise fail(
                web.HTTPServiceUnavailable, "broker_unavailable", type(exc).__name__, **{"Retry-After": "2"}
            ) from None
        return {"event": orjson.loads(value), "topic": topic, "partition": partition, "offset": offset}


REVIEW_KEY = web.AppKey("reviewing", Reviewing)


# --------------------------------------------------------------------------- #
# Requests
# --------------------------------------------------------------------------- #
async def namespace_of(request: web.Request) -> str:
    return await request.app[REVIEW_KEY].resolve_namespace(request)  # serve.py's rule, for reads and writes


def _ids(request: web.Request, *names: str) -> list[str]:
    return request.app[REVIEW_KEY].checked_ids(request, *names)


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        # A cross-site form cannot send JSON without a CORS preflight, which this API never grants.
        raise fail(web.HTTPUnsupportedMediaType, "json_only", "send Content-Type: application/json")
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise fail(web.HTTPRequestEntityTooLarge, "too_large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise fail(web.HTTPBadRequest, "invalid_json", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise fail(web.HTTPBadRequest, "not_an_object", "the body must be a JSON object")
    return body


async def _stored_image(request: web.Request, hotel_id: str, image_id: str):
    """The photo's record as Redis holds it (404 when the hotel has no such live photo)."""
    namespace = await namespace_of(request)
    redis = request.app[REVIEW_KEY].redis
    raw = await redis.hget(keys.images_key(namespace, hotel_id), image_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    if raw is None:
        raise fail(web.HTTPNotFound, "not_found", f"hotel {hotel_id!r} has no image {image_id!r} in {namespace!r}")
    rec, _ = decode_stored(image_id, raw)
    if rec.deleted:
        raise fail(web.HTTPNotFound, "not_found", f"image {image_id!r} of hotel {hotel_id!r} was deleted")
    return rec


async def label_area(request: web.Request) -> web.Response:
    review = request.app[REVIEW_KEY]
    person = await review.person(request)
    hotel_id, image_id = _ids(request, "hotel_id", "image_id")
    body = await _body(request)
    review.limit(person)
    rec = await _stored_image(request, hotel_id, image_id)
    area = body.get("area")
    areas = sorted(rec.area_probs or {"other": 1.0})
    if not isinstance(area, str) or (area not in areas and area != NOT_PROPERTY):
        raise fail(web.HTTPBadRequest, "bad_area", f"area must be one of {', '.join(areas)} or {NOT_PROPERTY}")
    event = LabelArea(
        _event_id(), hotel_id, image_id, person.reviewer_id, rec.model_version or "unknown", rec.url, area, _now()
    )
    result = await review.publish(review.settings.labels_topic, event)
    log.info("%s labelled %s/%s as %s (event %s)", person.reviewer_id, hotel_id, image_id, area, event.event_id)
    return web.json_response(result)


async def label_rating(request: web.Request) -> web.Response:
    review = request.app[REVIEW_KEY]
    person = await review.person(request)
    hotel_id, image_id = _ids(request, "hotel_id", "image_id")
    body = await _body(request)
    review.limit(person)
    rec = await _stored_image(request, hotel_id, image_id)
    rating = body.get("rating")
    if not isinstance(rating, int) or isinstance(rating, bool) or not RATING_MIN <= rating <= RATING_MAX:
        raise fail(web.HTTPBadRequest, "bad_rating", f"rating must be an integer {RATING_MIN}-{RATING_MAX}")
    event = LabelRating(
        _event_id(), hotel_id, image_id, person.reviewer_id, rec.model_version or "unknown", rec.url, rating, _now()
    )
    result = await review.publish(review.settings.labels_topic, event)
    log.info("%s rated %s/%s %d (event %s)", person.reviewer_id, hotel_id, image_id, rating, event.event_id)
    return web.json_response(result)


def _override(kind: str):
    """An editor's pin / unpin / hide / unhide, published to the main topic with its author."""

    async def handler(request: web.Request) -> web.Response:
        review = request.app[REVIEW_KEY]
        person = await review.person(request, editor=True)
        (hotel_id,) = _ids(request, "hotel_id")
        body = await _body(request)
        review.limit(person)
        event: Event
        if kind in (HIDDEN, UNHIDDEN):
            (_, image_id) = _ids(request, "hotel_id", "image_id")
            cls = ImageHidden if kind == HIDDEN else ImageUnhidden
            event = cls(_event_id(), hotel_id, image_id, _now(), person.reviewer_id)
        else:
            image_ids = body.get("image_ids", [])
            if not isinstance(image_ids, list) or not all(isinstance(i, str) for i in image_ids):
                raise fail(web.HTTPBadRequest, "bad_image_ids", "image_ids must be a list of image ids")
            pin_cls = GalleryPinned if kind == PINNED else GalleryUnpinned
            event = pin_cls(_event_id(), hotel_id, tuple(image_ids), _now(), person.reviewer_id)
        result = await review.publish(review.settings.topic, event)
        log.info("%s published %s for hotel %s (event %s)", person.reviewer_id, kind, hotel_id, event.event_id)
        return web.json_response(result)

    return handler


async def whoami(request: web.Request) -> web.Response:
    """GET /review/me[?hotel=<id>]: who the token is, their role, and the areas a photo of the
    hotel may be given (the model's areas, as stored, plus not_property)."""
    review = request.app[REVIEW_KEY]
    person = await review.person(request)
    body: dict[str, Any] = {"reviewer": person.reviewer_id, "role": person.role}
    hotel_id = request.query.get("hotel", "")
    if valid_id(hotel_id):
        namespace = await namespace_of(request)
        fields = await review.redis.hgetall(keys.images_key(namespace, hotel_id))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        areas: set[str] = set()
        for image_id, raw in fields.items():
            rec, _ = decode_stored(image_id.decode(), raw)
            areas.update(rec.area_probs or ())
        body["areas"] = [*sorted(areas), NOT_PROPERTY] if areas else []
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def _event_id() -> str:
    import uuid

    return uuid.uuid4().hex


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def add_routes(
    app: web.Application,
    settings: Settings,
    redis: RedisClient,
    resolve_namespace: Callable[[web.Request], Awaitable[str]],
    checked_ids: Callable[..., list[str]],
    publisher: Publisher | None = None,
) -> None:
    """Mount the review API on the read API's app (serve.py passes its namespace and id rules)."""
    review = Reviewing(settings, redis, resolve_namespace, checked_ids, publisher)
    app[REVIEW_KEY] = review

    async def _close(app: web.Application) -> None:
        await app[REVIEW_KEY].publisher.close()

    app.on_cleanup.append(_close)
    image = "/hotels/{hotel_id}/images/{image_id}"
    app.router.add_get("/review/me", whoami)
    app.router.add_post(f"{image}/area", label_area)
    app.router.add_post(f"{image}/rating", label_rating)
    app.router.add_post(f"{image}/hide", _override(HIDDEN))
    app.router.add_post(f"{image}/unhide", _override(UNHIDDEN))
    app.router.add_post("/hotels/{hotel_id}/pins", _override(PINNED))
    app.router.add_post("/hotels/{hotel_id}/unpin", _override(UNPINNED))
