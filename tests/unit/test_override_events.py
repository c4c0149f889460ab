"""Editors' override events: gallery.pinned/unpinned, image.hidden/unhidden (schema and reasons)."""

from __future__ import annotations

import orjson
import pytest

from galleryrank.consumer.stream.events import (
    MAX_PINNED,
    GalleryPinned,
    GalleryUnpinned,
    ImageHidden,
    ImageUnhidden,
    InvalidEvent,
    encode_event,
    parse_event,
)

PIN = {"event_id": "e-9", "type": "gallery.pinned", "hotel_id": "h-1042", "image_ids": ["img-3", "img-1"]}


def parse(obj, key=b"h-1042"):
    return parse_event(key, orjson.dumps(obj))


def test_pin_keeps_the_editors_order_and_round_trips():
    ev = parse({**PIN, "occurred_at": "2026-11-30T10:00:00Z"})
    assert ev == GalleryPinned("e-9", "h-1042", ("img-3", "img-1"), "2026-11-30T10:00:00Z")
    assert parse_event(*encode_event(ev)) == ev


@pytest.mark.parametrize(
    "event",
    [
        GalleryUnpinned("e-1", "h-1", (), None),
        GalleryUnpinned("e-2", "h-1", ("img-1",), "2026-11-30T10:00:00Z"),
        ImageHidden("e-3", "h-1", "img-1", None),
        ImageUnhidden("e-4", "h-1", "img-1", "2026-11-30T10:00:00Z"),
    ],
)
def test_other_override_events_round_trip(event):
    key, value = encode_event(event)
    assert key == b"h-1"
    assert parse_event(key, value) == event


def test_unpin_without_ids_means_every_pin():
    assert parse({"event_id": "e", "type": "gallery.unpinned", "hotel_id": "h-1042"}) == GalleryUnpinned(
        "e", "h-1042", (), None
    )


@pytest.mark.parametrize(
    "value, reason",
    [
        ({k: v for k, v in PIN.items() if k != "image_ids"}, "missing_field"),
        ({**PIN, "image_ids": "img-1"}, "wrong_type"),
        ({**PIN, "image_ids": []}, "invalid_image_ids"),
        ({**PIN, "image_ids": ["img-1", "img-1"]}, "invalid_image_ids"),
        ({**PIN, "image_ids": [f"i{n}" for n in range(MAX_PINNED + 1)]}, "invalid_image_ids"),
        ({**PIN, "image_ids": ["ok", 7]}, "wrong_type"),
        ({**PIN, "image_ids": ["has space"]}, "invalid_image_id"),
        ({**PIN, "image_ids": ["a{b}"]}, "invalid_image_id"),
        ({**PIN, "type": "gallery.unpinned", "image_ids": {"a": 1}}, "wrong_type"),
        ({"event_id": "e", "type": "image.hidden", "hotel_id": "h-1042"}, "missing_field"),
        ({"event_id": "e", "type": "image.unhidden", "hotel_id": "h-1042", "image_id": "a\nb"}, "invalid_image_id"),
        ({"event_id": "e", "type": "gallery.shuffled", "hotel_id": "h-1042"}, "unknown_type"),
        ({**PIN, "occurred_at": 5}, "wrong_type"),
    ],
)
def test_bad_override_events_have_a_reason(value, reason):
    out = parse(value)
    assert isinstance(out, InvalidEvent) and out.reason == reason and out.detail
    assert out.event_id == "e-9" or out.event_id == "e"


def test_override_key_must_be_the_hotel_id():
    assert parse(PIN, key=b"someone-else").reason == "key_mismatch"
    hidden = {"event_id": "e", "type": "image.hidden", "hotel_id": "h-1042", "image_id": "img-1"}
    assert parse(hidden, key=None).reason == "key_mismatch"
