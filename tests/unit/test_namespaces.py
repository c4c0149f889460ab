"""Pure parts of replay/promote: namespace names, meta offsets, times, replay bounds."""

from __future__ import annotations

from collections import namedtuple

import pytest
from aiokafka import TopicPartition

from galleryrank.consumer.bluegreen.namespaces import NamespaceError, end_fields, end_offsets, validate_name
from galleryrank.consumer.bluegreen.replay import ReplayBounds, ReplayError, ReplayPlan, ms_to_iso, parse_time

Record = namedtuple("Record", "topic partition offset timestamp")


@pytest.mark.parametrize("name", ["v2", "live", "blue-2026.11_a", "X" * 64])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a:b", "v*", "v?", "[v]", "a b", "-x", "X" * 65, "active", "promoting", "handover", "é"]
)
def test_names_that_would_break_keys_or_scan_patterns_are_refused(name):
    with pytest.raises(NamespaceError):
        validate_name(name)


def test_end_offsets_round_trip_and_ignore_other_meta():
    meta = {"model_version": "m", "end:0": "12", "end:3": "7", "created_at": "2026-11-29T00:00:00Z"}
    assert end_offsets(meta) == {0: 12, 3: 7}
    assert end_offsets({k: str(v) for k, v in end_fields({0: 12, 3: 7}).items()}) == {0: 12, 3: 7}


def test_parse_time():
    assert parse_time("earliest", open_value="earliest") is None
    assert parse_time(None, open_value="now") is None
    assert parse_time("NOW", open_value="now") is None
    assert parse_time("2026-11-29T00:00:00Z", open_value="now") == 1795910400000
    assert parse_time("2026-11-29T01:00:00+01:00", open_value="now") == 1795910400000
    assert parse_time("2026-11-29T00:00:00", open_value="now") == 1795910400000  # naive = UTC
    assert ms_to_iso(1795910400123, "now") == "2026-11-29T00:00:00.123Z"
    assert ms_to_iso(None, "earliest") == "earliest"
    with pytest.raises(ReplayError):
        parse_time("yesterday", open_value="now")


class FakeConsumer:
    def __init__(self):
        self.paused: set[TopicPartition] = set()
        self.seeks: dict[TopicPartition, int] = {}

    def pause(self, *tps):
        self.paused.update(tps)

    def seek(self, tp, offset):
        self.seeks[tp] = offset


class FakeScorer:
    """The part of GalleryScorer's public interface a replay uses."""

    def __init__(self):
        self.consumer = FakeConsumer()

    def pause(self, *tps):
        self.consumer.pause(*tps)

    def seek(self, tp, offset):
        self.consumer.seek(tp, offset)


async def test_bounds_seek_to_start_drop_past_end_and_stop_at_end():
    plan = ReplayPlan("t", start={0: 5, 1: 0, 2: 4}, end={0: 8, 1: 2, 2: 4})
    bounds, scorer = ReplayBounds(plan), FakeScorer()

    def accept(record):
        return bounds.accept(scorer, record)

    tps = {TopicPartition("t", p) for p in (0, 1, 2, 3)}
    await bounds.on_assigned(scorer, tps)
    assert scorer.consumer.seeks == {TopicPartition("t", 0): 5, TopicPartition("t", 1): 0, TopicPartition("t", 2): 4}
    assert scorer.consumer.paused == {TopicPartition("t", 3)}  # not in the plan (created later)

    assert plan.total == 5 and bounds.done(in_flight=0) == 0 and not bounds.reached_end()
    assert [accept(Record("t", 0, o, 0)) for o in (5, 6)] == [True, True]
    assert bounds.done(in_flight=2) == 0 and bounds.done(in_flight=0) == 2
    # One fetch returns a whole batch: 7 is inside, 8 and 9 are past the end.
    assert [accept(Record("t", 0, o, 0)) for o in (7, 8, 9)] == [True, False, False]
    assert TopicPartition("t", 0) in scorer.consumer.paused and bounds.beyond == 2
    assert not bounds.reached_end()  # partition 1 still has 0 and 1
    assert [accept(Record("t", 1, o, 0)) for o in (0, 1)] == [True, True]
    assert bounds.reached_end() and bounds.done(in_flight=0) == plan.total
    assert await bounds.stop_at(scorer)


def test_complete_to_a_partition_the_namespace_has_nothing_of_is_zero():
    from galleryrank.consumer.bluegreen.handover import complete_to

    ends = end_offsets({"end:0": "12", "end:1": "0"})
    assert complete_to(ends, 0) == 12 and complete_to(ends, 1) == 0
    assert complete_to(ends, 7) == 0  # created (or never assigned) after the namespace was last written
    assert complete_to({}, 0) is None  # no end offsets at all: unknown (a --force promote)


def test_shown_status():
    from galleryrank.consumer.bluegreen.namespaces import shown_status

    assert shown_status("live", {}, "live", None) == "live"
    assert shown_status("v2", {"status": "complete"}, "live", "v2") == "promoting"
    assert shown_status("v2", {"status": "complete"}, "live", None) == "complete"
