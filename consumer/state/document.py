"""The gallery document the website reads (docs/architecture.md, "The gallery document"): its bytes.

``image_entry`` serialises an image's entry once, when the image changes (``HotelState``
keeps it); ``render_document`` joins a ranked hotel's entries, each with the reason for its
position, into the document, byte for byte what ``orjson.dumps`` of it gives. The order is
decided by ``state/hotel.py`` (``HotelState.render``) with the ranking ``ranking_config``
builds from the settings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import orjson

from galleryrank.ranking.types import RankingConfig

from .records import ImageRecord


def ranking_config(strategy: str = "default", diversity: float | None = None) -> RankingConfig:
    """A RankingConfig from the service settings; refuses unknown strategies at start-up."""
    from galleryrank.ranking import get_strategy

    get_strategy(strategy)  # KeyError now, not at the first event
    return (
        RankingConfig(strategy=strategy) if diversity is None else RankingConfig(strategy=strategy, diversity=diversity)
    )


def image_entry(rec: ImageRecord, label: str | None = None) -> bytes:
    """The image's entry of the document, serialised, without its closing brace (the reason follows).
    With a reviewer's area ``label`` the entry shows it, and the model's area beside it."""
    body: dict[str, object] = {
        "image_id": rec.image_id,
        "url": rec.url,
        "area": rec.area if label is None else label,
        "area_confidence": round(rec.area_confidence, 3) if label is None else 1.0,
        "aesthetic": round(rec.aesthetic, 3),
    }
    if label is not None:
        body["model_area"] = rec.area
        body["model_area_confidence"] = round(rec.area_confidence, 3)
    return orjson.dumps(body)[:-1]


def render_document(
    hotel_id: str,
    model_version: str,
    updated_at: str,
    entries: Iterable[bytes],
    reasons: Sequence[str],
    pinned_missing: list[str],
) -> bytes:
    """The document: ``entries`` (``image_entry``) in display order, each with its reason.
    Beyond the read contract's fields, additive: ``reason`` and ``pinned_missing`` (pinned
    ids with no image shown: never uploaded, deleted or hidden)."""
    # Each entry is followed by its reason and "}," (the last comma dropped below): joined
    # in C (map/zip/chain), no per-image Python work.
    tails = {reason: b',"reason":' + orjson.dumps(reason) + b"}," for reason in set(reasons)}
    images = b"".join(itertools.chain.from_iterable(zip(entries, map(tails.__getitem__, reasons))))[:-1]
    return b"".join(
        (
            b'{"hotel_id":',
            orjson.dumps(hotel_id),
            b',"model_version":',
            orjson.dumps(model_version),
            b',"updated_at":',
            orjson.dumps(updated_at),
            b',"images":[',
            images,
            b'],"pinned_missing":',
            orjson.dumps(pinned_missing),
            b"}",
        )
    )
