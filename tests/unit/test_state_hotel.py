"""The hotel state layer's pure logic: event fences, the binary record, incremental
near-duplicate clustering, and a cached HotelState against one rebuilt from Redis."""

from __future__ import annotations

import base64
import random

import numpy as np
import orjson
import pytest

from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.overrides import HideChange, PinChange, encode_overrides
from galleryrank.consumer.state.records import (
    MAX_EVENT_IDS,
    NOTHING,
    Fence,
    ImageChange,
    decode_record,
    decode_stored,
    encode_record,
    parse_occurred_at,
    quantize,
    with_applied,
)
from galleryrank.ranking.duplicates import DuplicateGraph, int8_pairs, roots_of_pairs
from galleryrank.ranking.types import RankingConfig

AREAS = ["bedroom", "bathroom", "facade", "swimming_pool", "other"]
T = 1_795_860_000_000_000  # µs


# --- "newer" ----------------------------------------------------------------------------------------
def test_occurred_at_parses_to_microseconds_and_garbage_counts_as_absent():
    assert parse_occurred_at("2026-11-28T10:00:00Z") == parse_occurred_at("2026-11-28T10:00:00+00:00")
    assert parse_occurred_at("2026-11-28T10:00:00.000001Z") - parse_occurred_at("2026-11-28T10:00:00Z") == 1
    assert parse_occurred_at("2026-11-28T11:00:00+01:00") == parse_occurred_at("2026-11-28T10:00:00")
    assert parse_occurred_at(None) is None and parse_occurred_at("") is None
    assert parse_occurred_at("yesterday") is None


def test_a_redelivered_event_id_loses_at_any_offset_on_any_partition():
    applied = NOTHING.after(Fence(0, 10, "t"), "e-1")
    assert not applied.admits(Fence(0, 10, "t"), "e-1")
    assert not applied.admits(Fence(0, 99, "t"), "e-1")  # producer retry: new offset
    assert not applied.admits(Fence(3, 0, "t"), "e-1")  # another partition
    assert not applied.admits(Fence(0, 0, "t2"), "e-1")  # another topic


def test_occurred_at_decides_when_both_have_it_and_the_latest_ever_applied_counts():
    applied = NOTHING.after(Fence(0, 5, "t", T + 10), "a")
    assert not applied.admits(Fence(0, 6, "t", T + 9), "older-but-later-offset")
    assert applied.admits(Fence(0, 4, "t", T + 11), "newer-but-earlier-offset")
    # An event without occurred_at wins by offset; the item keeps the latest occurred_at,
    # so an older timed event still loses afterwards (no way back through rule 3).
    applied = applied.after(Fence(0, 7, "t"), "untimed")
    assert applied.occurred_at == T + 10
    assert not applied.admits(Fence(9, 0, "t", T + 9), "old-on-another-partition")


def test_without_occurred_at_offsets_order_one_partition_and_a_new_partition_or_topic_wins():
    applied = NOTHING.after(Fence(0, 5, "t"), "a")
    assert not applied.admits(Fence(0, 4, "t"), "b")
    assert applied.admits(Fence(0, 6, "t"), "c")
    assert applied.admits(Fence(1, 0, "t"), "d")  # partition count grew: the newest arrival
    assert applied.admits(Fence(0, 0, "t-v2"), "e")  # a new topic: its offsets restart
    moved = applied.after(Fence(1, 0, "t"), "d")
    assert not moved.admits(Fence(0, 3, "t"), "f")  # older than what partition 0 already applied
    assert moved.admits(Fence(0, 9, "t"), "g")
    assert dict(moved.seen) == {"t/0": 5, "t/1": 0}


def test_equal_occurred_at_falls_back_to_offsets():
    applied = NOTHING.after(Fence(0, 5, "t", T), "a")
    assert applied.admits(Fence(0, 6, "t", T), "b") and not applied.admits(Fence(0, 4, "t", T), "c")


def test_a_refused_event_is_remembered_and_the_id_list_is_bounded():
    applied = NOTHING.after(Fence(0, 5, "t"), "a")
    refused = applied.refuse(Fence(0, 3, "t"), "old")
    assert refused.knows("old") and not refused.admits(Fence(0, 50, "t"), "old")  # its retry loses
    assert refused.seen == applied.seen and refused.changed_at == applied.changed_at
    # It lost by offset; had it occurred_at, that is remembered: it cannot win by time later.
    timed = applied.refuse(Fence(0, 3, "t", T + 5), "old-timed").after(Fence(1, 0, "t", T + 1), "b")
    assert timed.occurred_at == T + 5 and not timed.admits(Fence(0, 3, "t", T + 5), "other-id")
    for k in range(3 * MAX_EVENT_IDS):
        refused = refused.after(Fence(0, 100 + k, "t"), f"e{k}")
    assert len(refused.events) == MAX_EVENT_IDS and refused.knows(f"e{3 * MAX_EVENT_IDS - 1}")


def test_once_an_event_loses_it_loses_forever():
    """Whatever happens after, an event that was applied or lost on its merits never wins
    again; a retry (its id with another fence) loses while its id is among the last ones."""
    rng = random.Random(1)
    for _ in range(300):
        applied, dominated, recent = NOTHING, [], []
        for k in range(40):
            fence = Fence(rng.randrange(3), rng.randrange(40), rng.choice(["t", "u"]), rng.choice([None, T + k % 7]))
            event_id = f"e{rng.randrange(30)}"
            known = applied.knows(event_id)
            if applied.admits(fence, event_id):
                applied = applied.after(fence, event_id)
                dominated.append((fence, event_id))
            elif not known:
                applied = applied.refuse(fence, event_id)
                dominated.append((fence, event_id))
            if not known:  # applied or refused: the id joins the record's last ids
                recent = [i for i in recent if i != event_id][-(MAX_EVENT_IDS - 1) :] + [event_id]
            for old_fence, old_id in dominated:
                assert not applied.admits(old_fence, f"fresh-{old_id}"), (old_fence, old_id)
            for old_id in recent:
                assert not applied.admits(Fence(9, 10**6, "z", T + 10**6), old_id)


# --- records ------------------------------------------------------------------------------------------
def image(image_id: str, offset: int, aesthetic: float, area: str, emb: np.ndarray | None = None, **kw) -> ImageChange:
    rng = np.random.default_rng(offset)
    probs = {a: 0.05 for a in AREAS}
    probs[area] = 0.8
    if emb is None:
        emb = rng.normal(size=32).astype(np.float32)
    return ImageChange(
        image_id,
        kw.pop("fence", Fence(0, offset, "t", None, 1_700_000_000_000 + offset)),
        kw.pop("event_id", f"e-{image_id}-{offset}"),
        url=f"https://cdn.example.com/{image_id}-{offset}.jpg",
        aesthetic=aesthetic,
        aesthetic_dist=tuple([0.1] * 10),
        area_probs=probs,
        embedding=emb / np.linalg.norm(emb),
        phash=int(rng.integers(0, 2**63)),
        model_version="m1",
        **kw,
    )


def test_binary_record_round_trips_and_patching_its_fence_keeps_the_rest():
    rec = image("a", 3, 6.12345, "bedroom", fence=Fence(2, 3, "t", T, 99))
    raw = encode_record(rec)
    assert raw[0] == 0xA1 and len(raw) < 250
    back = decode_record("a", raw)
    assert back.aesthetic == 6.123 and back.area == "bedroom" and back.phash == rec.phash
    assert back.fence == Fence(2, 3, "t", T) and back.applied.occurred_at == T
    assert encode_record(back) == raw
    patched = with_applied("a", raw, back.applied.refuse(Fence(0, 0), "zzz"))
    again = decode_record("a", patched)
    assert again.applied.knows("zzz") and again.url == back.url and again.aesthetic_dist == back.aesthetic_dist
    assert np.array_equal(quantize(again.embedding), quantize(back.embedding))


def test_records_written_before_the_binary_format_still_read():
    emb = np.random.default_rng(0).normal(size=16).astype(np.float32)
    emb /= np.linalg.norm(emb)
    q = quantize(emb)
    legacy = orjson.dumps(
        {
            "p": 1,
            "o": 42,
            "e": "ev-9",
            "url": "http://x/a.jpg",
            "a": 6.5,
            "d": [0.1] * 10,
            "ar": {"bedroom": 0.9, "other": 0.1},
            "m": "m0",
            "emb": base64.b64encode(q.tobytes()).decode(),
            "ph": "0123456789abcdef",
        }
    )
    rec, stored_q = decode_stored("a", legacy)
    assert rec.url == "http://x/a.jpg" and rec.aesthetic == 6.5 and rec.phash == 0x0123456789ABCDEF
    assert np.array_equal(stored_q, q) and rec.applied.knows("ev-9")
    assert not rec.applied.admits(Fence(1, 41), "older") and rec.applied.admits(Fence(1, 43), "newer")
    tomb = decode_record("a", orjson.dumps({"p": 0, "o": 5, "e": "ev-d", "deleted": True}))
    assert tomb.deleted and tomb.applied.knows("ev-d")
    # Patching a legacy record rewrites it in the binary format.
    assert with_applied("a", legacy, rec.applied.refuse(Fence(0, 0), "x"))[0] == 0xA1


# --- near duplicates --------------------------------------------------------------------------------------
def _vectors(n: int, dim: int = 32, copies: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    for k in range(copies):  # near copies, some chained (a copy of a copy)
        emb[n - 1 - k] = emb[k % 5] + rng.normal(size=dim).astype(np.float32) * (0.05 + 0.2 * (k % 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    q = np.stack([quantize(e) for e in emb]).astype(np.float32)
    phash = rng.integers(0, 2**63, size=n).astype(np.uint64)
    phash[n - 2] = phash[7] ^ np.uint64(0b111)  # a hash-only near copy
    return q, phash


def test_incremental_clusters_equal_the_batch_pass_in_any_insertion_order():
    n, cosine, ham = 60, 0.9, 10
    q, phash = _vectors(n)
    norm2 = (q.astype(np.float64) ** 2).sum(axis=1)
    has = np.ones(n, dtype=bool)
    batch = int8_pairs(q, norm2, has, phash, has, cosine, ham)
    assert len(batch) >= 5
    expected = roots_of_pairs(n, batch)
    for seed in range(5):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        graph, done = DuplicateGraph(), []
        for i in order:
            from galleryrank.ranking.duplicates import int8_close

            close = []
            if done:
                rows = np.array(done)
                hit = int8_close(q[rows], norm2[rows], q[i : i + 1], norm2[i : i + 1], cosine)[:, 0]
                hit |= np.bitwise_count(phash[rows] ^ phash[i]) <= ham
                close = [str(r) for r in rows[hit]]
            graph.link(str(i), close)
            done.append(i)
        assert np.array_equal(graph.roots({str(i): i for i in range(n)}, n), expected)
        # Removing an image that bridges two copies splits their cluster again.
        graph.unlink(str(0))
        roots = graph.roots({str(i): i for i in range(1, n)} | {}, n)
        assert roots is None or roots[0] == 0


# --- the cached hotel against the hotel rebuilt from Redis ----------------------------------------------------
def _random_changes(seed: int, count: int = 160):
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    base = {k: np_rng.normal(size=32).astype(np.float32) for k in range(12)}
    changes, live = [], set()
    for k in range(count):
        roll = rng.random()
        fence = Fence(rng.randrange(2), k, "t", rng.choice([None, T + k * 1000]), 1_700_000_000_000 + k)
        image_id = f"i{rng.randrange(40)}"
        if roll < 0.6:
            emb = base[rng.randrange(12)] + np_rng.normal(size=32).astype(np.float32) * rng.choice([0.02, 1.0])
            changes.append(image(image_id, k, round(rng.uniform(2, 9), 3), rng.choice(AREAS), emb, fence=fence))
            live.add(image_id)
        elif roll < 0.8:
            changes.append(ImageChange(image_id, fence, f"d{k}", deleted=True))
        elif roll < 0.87:
            changes.append(HideChange(image_id, fence, f"h{k}", hidden=rng.random() < 0.7))
        elif roll < 0.93:
            pins = tuple(rng.sample(sorted(live) or ["i0"], min(3, len(live) or 1)))
            changes.append(PinChange(fence, f"p{k}", pins, replace=rng.random() < 0.8))
        elif changes:  # a redelivery of an earlier change
            changes.append(changes[rng.randrange(len(changes))])
    return changes


@pytest.mark.parametrize("seed", range(4))
def test_the_cached_state_renders_what_the_state_rebuilt_from_redis_renders(seed):
    config = RankingConfig()
    state = HotelState("h-1", config)
    fields: dict[bytes, bytes] = {}
    for k, change in enumerate(_random_changes(seed)):
        verdict = state.apply(change)
        if verdict.record is not None:
            fields[change.image_id.encode()] = verdict.record
        if k % 17 == 0 or k == 159:
            doc = state.render()
            rebuilt = HotelState.from_redis("h-1", config, dict(fields), encode_overrides(state.overrides), None, None)
            assert rebuilt.render() == doc
            assert orjson.dumps(orjson.loads(doc)) == doc  # exactly what serialising the parsed document gives
            parsed = orjson.loads(doc)
            shown = {i["image_id"] for i in parsed["images"]}
            assert not shown & state.overrides.hidden
            assert shown == set(state.row) - state.overrides.hidden


def test_events_of_one_partition_in_any_order_end_in_the_same_state():
    """Download times reorder a partition's events before the writer: the result must not depend on it."""
    for timed in (True, False):
        changes = []
        for k in range(40):
            fence = Fence(0, k, "t", T + k * 1000 if timed else None, 1_700_000_000_000 + k)
            image_id = f"i{k % 7}"
            if k % 5 == 4:
                changes.append(ImageChange(image_id, fence, f"d{k}", deleted=True))
            else:
                changes.append(image(image_id, k, 2 + (k % 9) * 0.7, AREAS[k % 5], fence=fence))
        docs, records = set(), []
        for seed in range(6):
            shuffled = list(changes)
            random.Random(seed).shuffle(shuffled)
            state = HotelState("h", RankingConfig())
            for change in shuffled:
                state.apply(change)
            docs.add(state.render())
            records.append(
                {i: (a.seen, sorted(a.events), a.occurred_at, a.changed_at) for i, a in state.applied.items()}
            )
        assert len(docs) == 1, timed
        assert all(r == records[0] for r in records), timed
