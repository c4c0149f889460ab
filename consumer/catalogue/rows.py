"""One catalogue row -> one image.upserted event, or the reason it is refused.

The event_id is derived from (hotel_id, image_id, url): publishing the same catalogue again
sends the same ids, which the scorer recognises before downloading (stream/redelivery.py) and
the fence refuses (state/records.py); a row whose URL changed is a new event. Every event is
checked with the consumer's own parser (stream/events.parse_event) on the exact bytes that
will be sent, so nothing the consumer would dead-letter reaches Kafka.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..state.records import parse_occurred_at
from ..stream.events import ImageUpserted, InvalidEvent, encode_event, parse_event

EVENT_ID_PREFIX = "cat-"


@dataclass(frozen=True)
class Columns:
    hotel: str = "hotel_id"
    image: str = "image_id"
    url: str = "url"
    occurred_at: str | None = "occurred_at"  # optional: used when the row has it

    @property
    def required(self) -> tuple[str, str, str]:
        return self.hotel, self.image, self.url

    @property
    def wanted(self) -> list[str]:
        return [*self.required, *([self.occurred_at] if self.occurred_at else [])]


@dataclass(frozen=True)
class Reject:
    reason: str
    detail: str


def catalogue_event_id(hotel_id: str, image_id: str, url: str) -> str:
    """A stable id of the row's content: same row, same id; another URL, another id."""
    digest = hashlib.blake2b(f"{hotel_id}\x00{image_id}\x00{url}".encode(), digest_size=16).hexdigest()
    return EVENT_ID_PREFIX + digest


def _text(value: Any) -> str | None:
    """Ids and URLs as text: strings as they are, integers in decimal (Parquet/JSON int ids); else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _occurred_at(value: Any) -> str | None | Reject:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):  # a Parquet timestamp column
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        return Reject(
            "wrong_type", f"occurred_at must be an ISO-8601 string or a timestamp, got {type(value).__name__}"
        )
    if parse_occurred_at(value) is None:  # the consumer would order it as an event without a time
        return Reject("bad_occurred_at", f"occurred_at {value[:40]!r} is not an ISO-8601 time")
    return value


def row_event(
    values: dict[str, Any], columns: Columns, as_of: str | None = None
) -> tuple[ImageUpserted, bytes, bytes] | Reject:
    """(event, Kafka key, Kafka value) of a row, validated as the consumer will, or why not.

    `as_of` is the occurred_at of a row without one (the catalogue's export time): the fence
    then orders the row against live uploads of the same photo by time, both ways, instead of
    letting whichever arrives last win (state/records.py, rule 2)."""
    fields: list[str] = []
    for name in columns.required:
        raw = values.get(name)
        if raw is None or raw == "":
            return Reject("missing_field", f"column '{name}' is empty or missing")
        text = _text(raw)
        if text is None:
            return Reject("wrong_type", f"column '{name}' must be text or an integer, got {type(raw).__name__}")
        fields.append(text)
    hotel_id, image_id, url = fields
    occurred_at = _occurred_at(values.get(columns.occurred_at)) if columns.occurred_at else None
    if isinstance(occurred_at, Reject):
        return occurred_at
    occurred_at = occurred_at or as_of
    event = ImageUpserted(catalogue_event_id(hotel_id, image_id, url), hotel_id, image_id, url, occurred_at)
    key, value = encode_event(event)
    parsed = parse_event(key, value)
    if isinstance(parsed, InvalidEvent):
        return Reject(parsed.reason, parsed.detail)
    return event, key, value
