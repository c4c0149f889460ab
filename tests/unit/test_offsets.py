"""OffsetTracker: commit per partition only below the first unfinished offset."""

from __future__ import annotations

import random

from aiokafka import TopicPartition

from galleryrank.consumer.stream.offsets import OffsetTracker

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def start_all(tracker: OffsetTracker, tp: TopicPartition, offsets) -> None:
    for off in offsets:
        tracker.started(tp, off)


def test_nothing_seen_means_nothing_to_commit():
    assert OffsetTracker().committable() == {}


def test_position_stays_at_first_unfinished_offset_when_later_ones_finish_first():
    t = OffsetTracker()
    start_all(t, TP0, range(10, 15))
    for off in (14, 12, 11):
        t.done(TP0, off)
    assert t.committable() == {TP0: 10}  # 10 still running: nothing past it is safe
    t.done(TP0, 10)
    assert t.committable() == {TP0: 13}  # 10, 11, 12 done; 13 still running
    t.done(TP0, 13)
    assert t.committable() == {TP0: 15}  # all done: one past the highest seen


def test_only_moved_positions_are_reported_after_mark_committed():
    t = OffsetTracker()
    start_all(t, TP0, [0, 1])
    start_all(t, TP1, [5])
    t.done(TP0, 0)
    first = t.committable()
    assert first == {TP0: 1, TP1: 5}
    t.mark_committed(first)
    assert t.committable() == {}
    t.done(TP1, 5)
    assert t.committable() == {TP1: 6}


def test_partitions_are_independent_and_can_be_selected():
    t = OffsetTracker()
    start_all(t, TP0, [0, 1, 2])
    start_all(t, TP1, [7, 8])
    t.done(TP1, 7)
    t.done(TP1, 8)
    assert t.committable({TP1}) == {TP1: 9}
    assert t.committable({TP0}) == {TP0: 0}
    assert t.in_flight(TP0) == 3 and t.in_flight(TP1) == 0 and t.in_flight() == 3


def test_gaps_in_offsets_do_not_block_commits():
    # Compacted topics and transaction markers leave holes: offsets never seen are not pending.
    t = OffsetTracker()
    start_all(t, TP0, [3, 7, 20])
    t.done(TP0, 3)
    t.done(TP0, 7)
    assert t.committable() == {TP0: 20}
    t.done(TP0, 20)
    assert t.committable() == {TP0: 21}


def test_done_twice_or_for_unknown_partition_is_harmless():
    t = OffsetTracker()
    start_all(t, TP0, [0, 1])
    t.done(TP0, 0)
    t.done(TP0, 0)
    t.done(TP1, 99)
    assert t.committable() == {TP0: 1}
    assert t.in_flight() == 1


def test_forget_drops_revoked_partitions():
    t = OffsetTracker()
    start_all(t, TP0, [0, 1])
    start_all(t, TP1, [0])
    t.forget({TP0})
    assert t.in_flight() == 1
    assert set(t.committable()) == {TP1}
    t.done(TP0, 0)  # a late finisher of a revoked partition changes nothing
    assert set(t.committable()) == {TP1}


def test_random_completion_order_matches_a_brute_force_model():
    rng = random.Random(4)
    t = OffsetTracker()
    offsets = list(range(200))
    start_all(t, TP0, offsets)
    done: set[int] = set()
    last = None
    order = offsets[:]
    rng.shuffle(order)
    for off in order:
        t.done(TP0, off)
        done.add(off)
        expected = next((o for o in offsets if o not in done), offsets[-1] + 1)
        moved = t.committable()
        assert moved.get(TP0, last) == expected  # absent = unchanged since the last commit
        t.mark_committed(moved)
        last = expected


def test_a_fetched_batch_started_at_once_behaves_as_one_by_one():
    rng = random.Random(7)
    bulk, single = OffsetTracker(), OffsetTracker()
    batches = [list(range(0, 40)), list(range(40, 41)), list(range(41, 90, 3))]
    for batch in batches:
        bulk.started_many(TP0, batch)
        start_all(single, TP0, batch)
    order = [o for b in batches for o in b]
    rng.shuffle(order)
    for off in order:
        bulk.done(TP0, off)
        single.done(TP0, off)
        assert bulk.committable() == single.committable()
        assert bulk.in_flight() == single.in_flight()
    assert bulk.committable() == {TP0: 90}  # one past the last offset seen (89)


def test_a_rewind_below_pending_offsets_keeps_the_first_unfinished_one():
    # A seek backwards (replay) hands out lower offsets again: the position must follow them.
    t = OffsetTracker()
    t.started_many(TP0, [10, 11, 12])
    t.done(TP0, 10)
    t.started_many(TP0, [5, 6])
    assert t.committable() == {TP0: 5}
    t.done(TP0, 5)
    t.done(TP0, 6)
    assert t.committable() == {TP0: 11}
    t.started_many(TP0, [])
    assert t.in_flight() == 2
