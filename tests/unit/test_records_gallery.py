"""Per-image records, fences and the gallery document (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import orjson

from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.records import (
    NOTHING,
    Fence,
    ImageChange,
    decode_record,
    encode_record,
)
from galleryrank.ranking.types import RankingConfig


def build_document(hotel_id, records, now=None, config=None) -> bytes:
    """The document of a hotel holding ``records`` as they read back from Redis."""
    return HotelState.from_records(hotel_id, records, config or RankingConfig()).render(now)


def record(image_id, aesthetic, area, offset=1, emb_seed=0, deleted=False):
    rng = np.random.default_rng(emb_seed)
    emb = rng.normal(size=16).astype(np.float32)
    emb /= np.linalg.norm(emb)
    probs = {"bedroom": 0.05, "bathroom": 0.05, "facade": 0.05, "other": 0.05}
    probs[area] = 0.85
    return ImageChange(
        image_id,
        Fence(0, offset),
        f"e-{image_id}",
        deleted=deleted,
        url=f"http://x/{image_id}.jpg",
        aesthetic=aesthetic,
        aesthetic_dist=tuple([0.1] * 10),
        area_probs=probs,
        embedding=emb,
        phash=0x0123456789ABCDEF,
        model_version="m1",
    )


def test_fence_orders_offsets_within_a_partition():
    assert NOTHING.admits(Fence(0, 5), "e5")
    seen = NOTHING.after(Fence(0, 5), "e5")
    assert seen.admits(Fence(0, 6), "e6")
    assert not seen.admits(Fence(0, 5), "e5")  # a replay of the same event
    assert not seen.admits(Fence(0, 4), "e4")
    assert seen.admits(Fence(1, 0), "f0")  # partition count changed: the new event wins


def test_record_round_trip_is_compact_and_stable():
    rec = record("a", 6.123456, "bedroom")
    raw = encode_record(rec)
    back = decode_record("a", raw)
    assert back.aesthetic == 6.123 and back.area == "bedroom" and back.phash == rec.phash
    assert abs(float(np.dot(back.embedding, rec.embedding)) - 1.0) < 0.01  # int8 keeps the direction
    assert encode_record(back) == raw  # normalised records re-encode byte-identically
    assert len(raw) < 400
    tomb = decode_record("a", encode_record(record("a", 1, "other", deleted=True)))
    assert tomb.deleted and tomb.fence == Fence(0, 1)


def test_gallery_document_follows_the_read_contract():
    now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
    recs = [
        record("a", 5.0, "bedroom", emb_seed=1),
        record("b", 7.0, "facade", emb_seed=2),
        record("c", 6.0, "bathroom", emb_seed=3),
        record("d", 9.0, "other", deleted=True),
    ]
    doc = orjson.loads(build_document("h-1", recs, now=now))
    assert doc["hotel_id"] == "h-1" and doc["model_version"] == "m1"
    assert doc["updated_at"] == "2026-11-28T10:00:00.000Z"
    ids = [i["image_id"] for i in doc["images"]]
    assert sorted(ids) == ["a", "b", "c"]  # the deleted one is not shown
    assert ids[0] == "b"  # the most beautiful first
    first = doc["images"][0]
    assert set(first) >= {"image_id", "url", "area", "area_confidence", "aesthetic"}
    assert first["area"] == "facade" and first["area_confidence"] == 0.85 and first["aesthetic"] == 7.0


def test_gallery_is_deterministic_for_the_same_state():
    now = datetime(2026, 11, 28, tzinfo=UTC)
    recs = [record(f"i{k}", 5 + (k % 3), ["bedroom", "facade", "bathroom"][k % 3], emb_seed=k) for k in range(20)]
    assert build_document("h", recs, now=now) == build_document("h", list(reversed(recs)), now=now)


def test_ranking_config_from_settings_refuses_unknown_strategies_early():
    import pytest

    from galleryrank.consumer.state.document import ranking_config

    assert ranking_config("aesthetic").strategy == "aesthetic"
    assert ranking_config("xquad", 0.3).diversity == 0.3
    with pytest.raises(KeyError):
        ranking_config("no-such-strategy")


def test_pure_aesthetic_setting_orders_by_score_only():
    from galleryrank.consumer.state.document import ranking_config

    recs = [record(f"i{k}", 3 + k * 0.5, "bedroom", emb_seed=k) for k in range(6)]
    ordered = HotelState.from_records("h", recs, ranking_config("aesthetic")).ranked()[0]
    assert ordered == [r.image_id for r in sorted(recs, key=lambda r: r.aesthetic, reverse=True)]
