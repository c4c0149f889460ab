"""Field bounds where they are parsed (issue 20): the one time parser, record timestamps, the
future policy, and ids the binary record layout can always hold."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from galleryrank.consumer import times
from galleryrank.consumer.bluegreen.replay import ms_to_iso, parse_time
from galleryrank.consumer.failures import EventFault
from galleryrank.consumer.ids import MAX_ID_BYTES, valid_id
from galleryrank.consumer.state.records import Fence, encode_record, parse_occurred_at

NOW_MS = times.parse_iso_ms("2026-12-08T01:00:00Z")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-12-08T01:00:00Z", "2026-12-08T01:00:00.000Z"),
        ("2026-12-08T06:30:00+05:30", "2026-12-08T01:00:00.000Z"),
        ("2026-12-08T01:00:00", "2026-12-08T01:00:00.000Z"),  # no zone = UTC
        ("2026-W50-2T01:00:00Z", "2026-12-08T01:00:00.000Z"),  # a week date
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),
        ("1969-07-20T20:17:40.5Z", "1969-07-20T20:17:40.500Z"),
        # Its UTC instant is in year 10000: parses, formats clamped, never raises.
        ("9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59.999Z"),
    ],
)
def test_every_representable_time_parses_and_formats(text, expected):
    us = parse_occurred_at(text)
    assert us is not None
    assert times.iso_ms(us // 1000) == expected


@pytest.mark.parametrize("text", ["0000-01-01T00:00:00Z", "10000-01-01T00:00:00Z", "yesterday", "", None, "2026-13-01"])
def test_what_is_not_a_time_counts_as_absent(text):
    assert parse_occurred_at(text) is None


def test_replay_uses_the_same_parser():
    assert parse_time("2026-12-08T06:30:00+05:30", open_value="now") == NOW_MS
    assert ms_to_iso(10**17, "now") == "9999-12-31T23:59:59.999Z"  # no overflow
    assert ms_to_iso(-(10**17), "now") == "0001-01-01T00:00:00.000Z"


def _record(ts):
    return SimpleNamespace(topic="t", partition=0, offset=5, timestamp=ts)


def test_far_future_occurred_at_is_the_events_fault_and_unbelievable_timestamps_are_unknown():
    now = times.now_ms()
    with pytest.raises(EventFault) as caught:
        Fence.of(_record(now), "2999-01-01T00:00:00Z")
    assert caught.value.reason == "occurred_at_in_future"
    with pytest.raises(EventFault):
        Fence.of(_record(now), "9999-12-31T23:59:59-01:00")
    # Within the skew: fine. The reference is the record's timestamp (a replay decides the same).
    assert Fence.of(_record(now), times.iso_ms(now + 60_000), 300).occurred_at is not None
    with pytest.raises(EventFault):
        Fence.of(_record(now - 86_400_000), times.iso_ms(now - 3_600_000), 300)  # an hour ahead of its record
    # A record timestamp past year 9999, or far ahead of now, or not an int: unknown.
    assert Fence.of(_record(253402300800001), None).timestamp == -1
    assert Fence.of(_record(now + 10**9), None).timestamp == -1
    assert Fence.of(_record(None), None).timestamp == -1
    assert Fence.of(_record(now), None).timestamp == now
    # Far past is fine.
    assert Fence.of(_record(now), "0001-01-01T00:00:00Z").occurred_at < 0


@pytest.mark.parametrize("char, count", [("a", 128), ("é", 127), ("中", 85), ("😀", 63)])
def test_the_largest_valid_id_fits_the_record_in_every_utf8_width(char, count):
    largest = char * count
    assert valid_id(largest) and len(largest.encode()) <= MAX_ID_BYTES
    assert not valid_id(char * (count + 1))
    from galleryrank.consumer.state import records

    change_type = getattr(records, "ImageChange", None) or records.ImageState  # renamed by issue 21
    rec = change_type(largest, Fence(0, 1, "t"), largest, url="http://x/y.jpg", model_version="m")
    assert encode_record(rec)  # the event id's length byte holds it


def test_topic_names_fit_the_records_source_field():
    from galleryrank.consumer.settings import MAX_TOPIC_BYTES, Settings

    assert Settings(topic="t" * MAX_TOPIC_BYTES).topic == "t" * MAX_TOPIC_BYTES
    with pytest.raises(ValueError, match="at most"):
        Settings(topic="t" * (MAX_TOPIC_BYTES + 1))
    with pytest.raises(ValueError, match="at most"):
        Settings(dlq_topic="d" * (MAX_TOPIC_BYTES + 1))
    # The longest source a record can then hold still fits its one-byte length.
    from galleryrank.consumer.state import records

    change_type = getattr(records, "ImageChange", None) or records.ImageState  # renamed by issue 21
    fence = Fence(2**31 - 1, 1, "t" * MAX_TOPIC_BYTES + ".backfill")
    assert encode_record(change_type("i", fence, "e", deleted=True), records.NOTHING.after(fence, "e"))
