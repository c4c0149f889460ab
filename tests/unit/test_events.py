"""The event schema: every kind of bad input gets its own reason code."""

from __future__ import annotations

import orjson
import pytest

from galleryrank.consumer.stream.events import (
    ImageDeleted,
    ImageUpserted,
    InvalidEvent,
    encode_event,
    parse_event,
)

GOOD = {
    "event_id": "e-1",
    "type": "image.upserted",
    "hotel_id": "h-1042",
    "image_id": "img-77",
    "url": "https://cdn.example.com/h-1042/77.jpg",
    "occurred_at": "2026-11-28T10:00:00Z",
}


def parse(obj, key=b"h-1042"):
    return parse_event(key, orjson.dumps(obj) if not isinstance(obj, bytes) else obj)


def test_good_upsert_and_delete_round_trip():
    ev = parse(GOOD)
    assert ev == ImageUpserted("e-1", "h-1042", "img-77", GOOD["url"], GOOD["occurred_at"])
    assert parse_event(*encode_event(ev)) == ev
    gone = parse({"event_id": "e-2", "type": "image.deleted", "hotel_id": "h-1042", "image_id": "img-77"})
    assert gone == ImageDeleted("e-2", "h-1042", "img-77", None)
    assert parse_event(*encode_event(gone)) == gone


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe garbage", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"x" * 70_000, "event_too_large"),
        ({**GOOD, "image_id": None}, "missing_field"),
        ({k: v for k, v in GOOD.items() if k != "hotel_id"}, "missing_field"),
        ({**GOOD, "image_id": 77}, "wrong_type"),
        ({**GOOD, "occurred_at": 5}, "wrong_type"),
        ({**GOOD, "type": "image.rotated"}, "unknown_type"),
        ({**GOOD, "type": None}, "missing_field"),
        ({k: v for k, v in GOOD.items() if k != "url"}, "missing_field"),
        ({**GOOD, "url": "file:///etc/passwd"}, "bad_scheme"),
        ({**GOOD, "url": "gopher://x"}, "bad_scheme"),
        ({**GOOD, "url": ""}, "bad_url"),
        ({**GOOD, "image_id": "a\nb"}, "invalid_image_id"),
        ({**GOOD, "image_id": "has space"}, "invalid_image_id"),
        ({**GOOD, "image_id": "x" * 129}, "invalid_image_id"),
        ({**GOOD, "event_id": "\x00"}, "invalid_event_id"),
    ],
)
def test_bad_events_have_a_reason(value, reason):
    out = parse(value)
    assert isinstance(out, InvalidEvent) and out.reason == reason and out.detail


def test_hotel_id_with_braces_is_refused_it_would_break_the_hash_tag():
    out = parse({**GOOD, "hotel_id": "h}1"}, key=b"h}1")
    assert isinstance(out, InvalidEvent) and out.reason == "invalid_hotel_id"


def test_key_must_be_the_hotel_id():
    assert parse(GOOD, key=b"other").reason == "key_mismatch"
    assert parse(GOOD, key=None).reason == "key_mismatch"


def test_empty_value():
    assert parse_event(b"k", None).reason == "empty_value"
