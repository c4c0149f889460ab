"""The review queue: ``GET /review/queue?hotel=<id>&limit=<n>``, the next photos worth the calling
person's look, best first (docs/labelling.md, "The review queue").

A photo's expected value adds up: suspected label errors (``galleryrank labels suspects`` writes
``keys.LABEL_SUSPECTS_KEY``) first, then low margin between the model's two best areas, the top
of the gallery (hero, each "first <area>"), near duplicates tagged differently, and photos with
fewer than ``review_raters`` ratings. A person never gets a photo they labelled or rated, nor one
the queue already gave them (``keys.review_seen_key``); a photo labelled and rated by
``review_raters`` people leaves the queue, unless it is a suspect.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from ..ids import valid_id
from ..state import keys
from ..state.document import ranking_config
from ..state.hotel import HotelState
from ..state.records import decode_stored
from .review import REVIEW_KEY, fail, namespace_of

QUEUE_LIMIT_DEFAULT = 10
QUEUE_LIMIT_MAX = 50
SEEN_TTL_S = 90 * 86_400  # a person's "already shown" list forgets after three months

# --------------------------------------------------------------------------- #
# The review queue
# --------------------------------------------------------------------------- #
# Expected value of a person's look at a photo (docs/labelling.md, "The review queue"):
SUSPECT_WEIGHT = 10.0  # `labels suspects` thinks its label is wrong: first
UNCERTAIN_WEIGHT = 3.0  # x (1 - margin between the model's two best areas)
HERO_WEIGHT = 2.0  # the gallery's first photo: a wrong tag costs most there
FIRST_AREA_WEIGHT = 1.0  # "first <area>": the top photo of its area
DISAGREE_WEIGHT = 1.5  # a near duplicate of it is tagged another area
UNRATED_WEIGHT = 1.0  # no one rated it yet
UNDER_RATED_WEIGHT = 0.5  # fewer than review_raters ratings


def queue_items(
    state: HotelState,
    document: dict[str, Any],
    suspects: dict[str, float],
    me: str,
    seen: set[str],
    raters: int,
) -> list[dict[str, Any]]:
    """The photos of one hotel worth this person's look, best first (pure: tests call it)."""
    entries = {e["image_id"]: (k, e) for k, e in enumerate(document.get("images", []))}
    ov = state.overrides
    shown_area = {i: e["area"] for i, (_, e) in entries.items()}
    items = []
    for image_id, (position, entry) in entries.items():
        if image_id in seen:
            continue
        label = ov.areas.get(image_id)
        votes = ov.ratings.get(image_id, {})
        if me in votes or (label is not None and label.reviewer == me):
            continue  # never the same person twice on one photo
        if label is not None and len(votes) >= raters and image_id not in suspects:
            continue  # labelled, and rated by enough people
        rec, _ = decode_stored(image_id, state.raw[image_id])
        probs = sorted((rec.area_probs or {"other": 1.0}).values(), reverse=True)
        margin = probs[0] - (probs[1] if len(probs) > 1 else 0.0)
        score, why = 0.0, []
        if image_id in suspects:
            score += SUSPECT_WEIGHT * (1.0 + suspects[image_id])
            why.append(f"suspected label error ({suspects[image_id]:.2f})")
        if label is None:
            score += UNCERTAIN_WEIGHT * (1.0 - margin)
            if margin < 0.5:
                why.append(f"uncertain area (margin {margin:.2f})")
        reason = str(entry.get("reason", ""))
        if position == 0:
            score += HERO_WEIGHT
            why.append("hero")
        elif reason.startswith("first "):
            score += FIRST_AREA_WEIGHT
            why.append(reason.split(" (")[0])
        neighbours = state.graph.edges.get(image_id, ())
        if any(shown_area.get(n, shown_area[image_id]) != shown_area[image_id] for n in neighbours):
            score += DISAGREE_WEIGHT
            why.append("near duplicates tagged differently")
        if not votes:
            score += UNRATED_WEIGHT
            why.append("unrated")
        elif len(votes) < raters:
            score += UNDER_RATED_WEIGHT
            why.append(f"{len(votes)} of {raters} ratings")
        items.append(
            {
                "hotel_id": state.hotel_id,
                "image_id": image_id,
                "url": entry["url"],
                "position": position + 1,
                "area": entry["area"],
                "model_area": rec.area,
                "area_confidence": round(rec.area_confidence, 3),
                "margin": round(margin, 3),
                "areas": sorted(rec.area_probs or {"other": 1.0}),
                "ratings": len(votes),
                "labelled": label is not None,
                "model_version": rec.model_version,
                "score": round(score, 3),
                "why": why,
            }
        )
    items.sort(key=lambda item: (-item["score"], item["position"]))
    return items


async def review_queue(request: web.Request) -> web.Response:
    """GET /review/queue?hotel=<id>&limit=<n>: the next photos for this person (each shown once)."""
    review = request.app[REVIEW_KEY]
    person = await review.person(request)
    namespace = await namespace_of(request)
    hotel_id = request.query.get("hotel", "")
    if not valid_id(hotel_id):
        raise fail(web.HTTPBadRequest, "bad_hotel", "?hotel=<hotel id> is required")
    try:
        limit = min(max(int(request.query.get("limit", QUEUE_LIMIT_DEFAULT)), 1), QUEUE_LIMIT_MAX)
    except ValueError:
        raise fail(web.HTTPBadRequest, "bad_limit", "limit must be an integer") from None
    redis = review.redis
    pipe = redis.pipeline(transaction=False)
    pipe.hgetall(keys.images_key(namespace, hotel_id))
    pipe.get(keys.overrides_key(namespace, hotel_id))
    pipe.get(keys.version_key(namespace, hotel_id))
    pipe.get(keys.gallery_key(namespace, hotel_id))
    pipe.smembers(keys.review_seen_key(person.reviewer_id))
    fields, overrides, version, document, seen_raw = await pipe.execute()
    if document is None:
        raise fail(web.HTTPNotFound, "not_found", f"no gallery for hotel {hotel_id!r} in namespace {namespace!r}")
    prefix = f"{hotel_id} "
    suspects: dict[str, float] = {}
    image_ids = sorted(k.decode() for k in fields)
    if image_ids:  # `labels suspects`' scores of this hotel's photos (one ZMSCORE)
        scores = await redis.zmscore(keys.LABEL_SUSPECTS_KEY, [prefix + i for i in image_ids])
        suspects = {i: float(score) for i, score in zip(image_ids, scores) if score is not None}
    seen = {m.decode()[len(prefix) :] for m in seen_raw if m.decode().startswith(prefix)}
    config = ranking_config(review.settings.ranking_strategy, review.settings.ranking_diversity)

    def build() -> list[dict[str, Any]]:
        state = HotelState.from_redis(hotel_id, config, fields, overrides, version, document)
        return queue_items(
            state, orjson.loads(document), suspects, person.reviewer_id, seen, review.settings.review_raters
        )

    items = (await asyncio.to_thread(build))[:limit]
    if items:
        seen_key = keys.review_seen_key(person.reviewer_id)
        await redis.sadd(seen_key, *(f"{prefix}{i['image_id']}" for i in items))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        await redis.expire(seen_key, SEEN_TTL_S)
    body = {"reviewer": person.reviewer_id, "role": person.role, "namespace": namespace, "items": items}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    """Mount the queue (after review.add_routes: it uses the same authentication)."""
    app.router.add_get("/review/queue", review_queue)
