"""Publishing events: the demo producer, tests and benchmarks use this."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from ..settings import Settings
from .events import (
    Event,
    GalleryPinned,
    GalleryUnpinned,
    ImageDeleted,
    ImageHidden,
    ImageUnhidden,
    ImageUpserted,
    LabelArea,
    LabelRating,
    encode_event,
)
from .kafka import make_producer


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def upserted(hotel_id: str, image_id: str, url: str) -> ImageUpserted:
    return ImageUpserted(uuid.uuid4().hex, hotel_id, image_id, url, now_iso())


def deleted(hotel_id: str, image_id: str) -> ImageDeleted:
    return ImageDeleted(uuid.uuid4().hex, hotel_id, image_id, now_iso())


# Editors' overrides (docs/events.md). `galleryrank pin/unpin/hide/unhide` publish these.
def pinned(hotel_id: str, image_ids: Iterable[str]) -> GalleryPinned:
    return GalleryPinned(uuid.uuid4().hex, hotel_id, tuple(image_ids), now_iso())


def unpinned(hotel_id: str, image_ids: Iterable[str] = ()) -> GalleryUnpinned:
    return GalleryUnpinned(uuid.uuid4().hex, hotel_id, tuple(image_ids), now_iso())


def hidden(hotel_id: str, image_id: str) -> ImageHidden:
    return ImageHidden(uuid.uuid4().hex, hotel_id, image_id, now_iso())


def unhidden(hotel_id: str, image_id: str) -> ImageUnhidden:
    return ImageUnhidden(uuid.uuid4().hex, hotel_id, image_id, now_iso())


# Reviewers' labels (docs/labelling.md): the write API publishes these to `labels_topic`.
def label_area(hotel_id: str, image_id: str, area: str, *, reviewer: str, model_version: str, url: str) -> LabelArea:
    return LabelArea(uuid.uuid4().hex, hotel_id, image_id, reviewer, model_version, url, area, now_iso())


def label_rating(
    hotel_id: str, image_id: str, rating: int, *, reviewer: str, model_version: str, url: str
) -> LabelRating:
    return LabelRating(uuid.uuid4().hex, hotel_id, image_id, reviewer, model_version, url, rating, now_iso())


async def publish(
    settings: Settings,
    events: Iterable[Event | tuple[bytes | None, bytes | None]],
    topic: str | None = None,
) -> int:
    """Send events (or raw (key, value) records, for bad input) and wait for acks=all."""
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    count = 0
    try:
        futures = []
        for ev in events:
            key, value = ev if isinstance(ev, tuple) else encode_event(ev)
            futures.append(await producer.send(topic or settings.topic, key=key, value=value))
            count += 1
        for fut in futures:
            await fut
        await producer.flush()
    finally:
        await producer.stop()
    return count
