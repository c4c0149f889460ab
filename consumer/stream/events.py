"""The input event schema (docs/architecture.md, "Events") and its validation.

Parsing never raises: a record either becomes an event or an `InvalidEvent`
with a short reason code (for DLQ headers and metrics) and a readable detail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from ..ids import ID_RULE, valid_id

# 64 KiB is ~100x a real event; anything bigger is a mistake or an attack.
MAX_EVENT_BYTES = 64 * 1024
MAX_URL_CHARS = 2048
# The one id check (consumer/ids.py): also used by the read API, which must not import stream/.

UPSERTED = "image.upserted"
DELETED = "image.deleted"
# Editors' overrides (docs/events.md): same topic, same key (hotel_id), same fencing.
PINNED = "gallery.pinned"
UNPINNED = "gallery.unpinned"
HIDDEN = "image.hidden"
UNHIDDEN = "image.unhidden"
# Reviewers' labels (docs/labelling.md): topic `labels_topic`, same key (hotel_id), same fencing.
LABEL_AREA = "label.area"
LABEL_RATING = "label.rating"
EVENT_TYPES = (UPSERTED, DELETED, PINNED, UNPINNED, HIDDEN, UNHIDDEN, LABEL_AREA, LABEL_RATING)
_IMAGE_TYPES = (UPSERTED, DELETED, HIDDEN, UNHIDDEN, LABEL_AREA, LABEL_RATING)  # these name one image_id
_LABEL_TYPES = (LABEL_AREA, LABEL_RATING)
# "Not a photo of the property": the area a reviewer gives a stock photo, a map, a logo.
NOT_PROPERTY = "not_property"
# An area name as the models and the ranking use them ("bedroom", "swimming pool"): the parser
# checks the form; which areas exist is the model's, checked by the write API.
AREA_RE = re.compile(r"[a-z0-9](?:[a-z0-9 _-]{0,62}[a-z0-9])?")
RATING_MIN, RATING_MAX = 1, 10  # NIMA's ten bins
# A gallery page shows a few dozen photos; pins are for the first ones.
MAX_PINNED = 50


@dataclass(frozen=True)
class ImageUpserted:
    event_id: str
    hotel_id: str
    image_id: str
    url: str
    occurred_at: str | None


@dataclass(frozen=True)
class ImageDeleted:
    event_id: str
    hotel_id: str
    image_id: str
    occurred_at: str | None


@dataclass(frozen=True)
class GalleryPinned:
    """The hotel's pins become exactly ``image_ids``: they take the first positions, in this order."""

    event_id: str
    hotel_id: str
    image_ids: tuple[str, ...]
    occurred_at: str | None
    author: str | None = None  # the reviewer who published it through the write API


@dataclass(frozen=True)
class GalleryUnpinned:
    """``image_ids`` leave the pins (the others keep their order); empty = every pin goes."""

    event_id: str
    hotel_id: str
    image_ids: tuple[str, ...]
    occurred_at: str | None
    author: str | None = None  # the reviewer who published it through the write API


@dataclass(frozen=True)
class ImageHidden:
    event_id: str
    hotel_id: str
    image_id: str
    occurred_at: str | None
    author: str | None = None  # the reviewer who published it through the write API


@dataclass(frozen=True)
class ImageUnhidden:
    event_id: str
    hotel_id: str
    image_id: str
    occurred_at: str | None
    author: str | None = None  # the reviewer who published it through the write API


@dataclass(frozen=True)
class LabelArea:
    """A reviewer's area for one photo (an area of the model, or NOT_PROPERTY)."""

    event_id: str
    hotel_id: str
    image_id: str
    reviewer: str  # the authenticated person (set by the write API, never by the client)
    model_version: str  # the model version the reviewer saw
    url: str  # the photo as the page showed it: an export never needs the main topic
    area: str
    occurred_at: str | None


@dataclass(frozen=True)
class LabelRating:
    """A reviewer's 1-10 rating of one photo (NIMA's bins)."""

    event_id: str
    hotel_id: str
    image_id: str
    reviewer: str
    model_version: str
    url: str
    rating: int
    occurred_at: str | None


@dataclass(frozen=True)
class InvalidEvent:
    reason: str
    detail: str
    event_id: str | None = None


OverrideEvent = GalleryPinned | GalleryUnpinned | ImageHidden | ImageUnhidden
LabelEvent = LabelArea | LabelRating
Event = ImageUpserted | ImageDeleted | OverrideEvent | LabelEvent


def _id_field(obj: dict, name: str) -> str | InvalidEvent:
    value = obj.get(name)
    if value is None:
        return InvalidEvent("missing_field", f"field '{name}' is missing")
    if not isinstance(value, str):
        return InvalidEvent("wrong_type", f"field '{name}' must be a string, got {type(value).__name__}")
    if not valid_id(value):
        return InvalidEvent(f"invalid_{name}", f"field '{name}' must be {ID_RULE}")
    return value


def parse_event(key: bytes | None, value: bytes | None) -> Event | InvalidEvent:
    """Validate one Kafka record against the event schema."""
    if value is None:
        return InvalidEvent("empty_value", "record has no value")
    if len(value) > MAX_EVENT_BYTES:
        return InvalidEvent("event_too_large", f"value is {len(value)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return InvalidEvent("invalid_json", f"value is not UTF-8 JSON: {str(exc)[:120]}")
    if not isinstance(obj, dict):
        return InvalidEvent("not_an_object", f"value must be a JSON object, got {type(obj).__name__}")

    event_id = _id_field(obj, "event_id")
    if isinstance(event_id, InvalidEvent):
        return event_id
    fields: dict[str, str] = {}
    checked = _id_field(obj, "hotel_id")
    if isinstance(checked, InvalidEvent):
        return InvalidEvent(checked.reason, checked.detail, event_id)
    fields["hotel_id"] = checked

    kind = obj.get("type")
    if kind is None:
        return InvalidEvent("missing_field", "field 'type' is missing", event_id)
    if kind not in EVENT_TYPES:
        shown = kind if isinstance(kind, str) else type(kind).__name__
        return InvalidEvent(
            "unknown_type", f"type {str(shown)[:40]!r} is not one of {', '.join(EVENT_TYPES)}", event_id
        )
    if kind in _IMAGE_TYPES:
        checked = _id_field(obj, "image_id")
        if isinstance(checked, InvalidEvent):
            return InvalidEvent(checked.reason, checked.detail, event_id)
        fields["image_id"] = checked

    occurred_at = obj.get("occurred_at")
    if occurred_at is not None and not isinstance(occurred_at, str):
        return InvalidEvent("wrong_type", "field 'occurred_at' must be a string", event_id)

    # The Kafka key keeps one hotel's events ordered on one partition; a record
    # keyed otherwise would be applied out of order, so it is refused.
    if key is None or key != fields["hotel_id"].encode():
        return InvalidEvent("key_mismatch", "Kafka key must be the hotel_id (UTF-8)", event_id)

    if kind == DELETED:
        return ImageDeleted(event_id, fields["hotel_id"], fields["image_id"], occurred_at)
    author: str | None = None
    if kind in (HIDDEN, UNHIDDEN, PINNED, UNPINNED) and obj.get("author") is not None:
        checked = _id_field(obj, "author")  # optional: who published it through the write API
        if isinstance(checked, InvalidEvent):
            return InvalidEvent(checked.reason, checked.detail, event_id)
        author = checked
    if kind == HIDDEN:
        return ImageHidden(event_id, fields["hotel_id"], fields["image_id"], occurred_at, author)
    if kind == UNHIDDEN:
        return ImageUnhidden(event_id, fields["hotel_id"], fields["image_id"], occurred_at, author)
    if kind in (PINNED, UNPINNED):
        image_ids = _image_ids(obj, required=kind == PINNED)
        if isinstance(image_ids, InvalidEvent):
            return InvalidEvent(image_ids.reason, image_ids.detail, event_id)
        cls = GalleryPinned if kind == PINNED else GalleryUnpinned
        return cls(event_id, fields["hotel_id"], image_ids, occurred_at, author)

    url = _url(obj, kind)
    if isinstance(url, InvalidEvent):
        return InvalidEvent(url.reason, url.detail, event_id)
    if kind in _LABEL_TYPES:
        label = _label(obj, kind, event_id, fields["hotel_id"], fields["image_id"], url, occurred_at)
        return label if not isinstance(label, InvalidEvent) else InvalidEvent(label.reason, label.detail, event_id)
    return ImageUpserted(event_id, fields["hotel_id"], fields["image_id"], url, occurred_at)


def _url(obj: dict, kind: str) -> str | InvalidEvent:
    url = obj.get("url")
    if url is None:
        return InvalidEvent("missing_field", f"field 'url' is required for {kind}")
    if not isinstance(url, str):
        return InvalidEvent("wrong_type", "field 'url' must be a string")
    if not url or len(url) > MAX_URL_CHARS:
        return InvalidEvent("bad_url", f"url must be 1-{MAX_URL_CHARS} characters")
    if not url.lower().startswith(("http://", "https://")):
        return InvalidEvent("bad_scheme", "url scheme must be http or https")
    return url


def _label(
    obj: dict, kind: str, event_id: str, hotel_id: str, image_id: str, url: str, occurred_at: str | None
) -> LabelEvent | InvalidEvent:
    """The label fields of a label.area / label.rating event (docs/labelling.md)."""
    reviewer = _id_field(obj, "reviewer")
    if isinstance(reviewer, InvalidEvent):
        return reviewer
    model_version = _id_field(obj, "model_version")
    if isinstance(model_version, InvalidEvent):
        return model_version
    if kind == LABEL_AREA:
        area = obj.get("area")
        if area is None:
            return InvalidEvent("missing_field", "field 'area' is required for label.area")
        if not isinstance(area, str):
            return InvalidEvent("wrong_type", "field 'area' must be a string")
        if not AREA_RE.fullmatch(area):
            return InvalidEvent("invalid_area", "area must be 1-64 of a-z 0-9 space _ - (an area name or not_property)")
        return LabelArea(event_id, hotel_id, image_id, reviewer, model_version, url, area, occurred_at)
    rating = obj.get("rating")
    if rating is None:
        return InvalidEvent("missing_field", "field 'rating' is required for label.rating")
    if not isinstance(rating, int) or isinstance(rating, bool):
        return InvalidEvent("wrong_type", f"field 'rating' must be an integer, got {type(rating).__name__}")
    if not RATING_MIN <= rating <= RATING_MAX:
        return InvalidEvent("invalid_rating", f"rating must be {RATING_MIN}-{RATING_MAX}")
    return LabelRating(event_id, hotel_id, image_id, reviewer, model_version, url, rating, occurred_at)


def _image_ids(obj: dict, required: bool) -> tuple[str, ...] | InvalidEvent:
    """The ordered ``image_ids`` of a pin event: a list of 1-MAX_PINNED distinct valid ids
    (for gallery.unpinned it may be absent or empty: every pin goes)."""
    value = obj.get("image_ids")
    if value is None:
        if required:
            return InvalidEvent("missing_field", "field 'image_ids' is required for gallery.pinned")
        return ()
    if not isinstance(value, list):
        return InvalidEvent("wrong_type", f"field 'image_ids' must be a list, got {type(value).__name__}")
    if required and not value:
        return InvalidEvent("invalid_image_ids", "gallery.pinned needs at least one image id (gallery.unpinned clears)")
    if len(value) > MAX_PINNED:
        return InvalidEvent("invalid_image_ids", f"{len(value)} image ids, at most {MAX_PINNED} can be pinned")
    for item in value:
        if not isinstance(item, str):
            return InvalidEvent("wrong_type", f"image_ids must be strings, got {type(item).__name__}")
        if not valid_id(item):
            return InvalidEvent("invalid_image_id", f"image_ids: {item[:40]!r} is not a valid id")
    if len(set(value)) != len(value):
        return InvalidEvent("invalid_image_ids", "image_ids must not repeat an id")
    return tuple(value)


_TYPE_OF = {
    ImageUpserted: UPSERTED,
    ImageDeleted: DELETED,
    GalleryPinned: PINNED,
    GalleryUnpinned: UNPINNED,
    ImageHidden: HIDDEN,
    ImageUnhidden: UNHIDDEN,
    LabelArea: LABEL_AREA,
    LabelRating: LABEL_RATING,
}


def encode_event(event: Event) -> tuple[bytes, bytes]:
    """Kafka (key, value) for an event; producers, the demo, the CLI and tests use it."""
    body: dict[str, object] = {"event_id": event.event_id, "type": _TYPE_OF[type(event)], "hotel_id": event.hotel_id}
    if isinstance(event, GalleryPinned | GalleryUnpinned):
        if event.image_ids or isinstance(event, GalleryPinned):
            body["image_ids"] = list(event.image_ids)
    else:
        body["image_id"] = event.image_id
    if isinstance(event, ImageUpserted):
        body["url"] = event.url
    if isinstance(event, LabelArea | LabelRating):
        body["reviewer"] = event.reviewer
        body["model_version"] = event.model_version
        body["url"] = event.url
        if isinstance(event, LabelArea):
            body["area"] = event.area
        else:
            body["rating"] = event.rating
    if event.occurred_at is not None:
        body["occurred_at"] = event.occurred_at
    if isinstance(event, OverrideEvent) and event.author is not None:
        body["author"] = event.author
    return event.hotel_id.encode(), orjson.dumps(body)
