"""Editors' overrides of one hotel as state: fencing, encoding, and the gallery document they shape."""

from __future__ import annotations

import orjson

from galleryrank.consumer.state.hotel import HotelState
from galleryrank.consumer.state.overrides import (
    HideChange,
    HotelOverrides,
    PinChange,
    decode_overrides,
    encode_overrides,
)
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.ranking.types import RankingConfig


def record(image_id: str, aesthetic: float, area: str, offset: int, deleted: bool = False) -> ImageChange:
    if deleted:
        return ImageChange(image_id, Fence(0, offset), f"e{offset}", deleted=True)
    return ImageChange(
        image_id,
        Fence(0, offset),
        f"e{offset}",
        url=f"http://photos.example/{image_id}.jpg",
        aesthetic=aesthetic,
        area_probs={area: 0.9, "other": 0.1} if area != "other" else {"other": 1.0},
    )


RECORDS = [
    record("a", 7.0, "bedroom", 1),
    record("b", 6.0, "bedroom", 2),
    record("c", 5.0, "swimming_pool", 3),
    record("d", 4.0, "bathroom", 4),
]


def test_pins_replace_remove_and_clear_each_fenced():
    ov = HotelOverrides()
    assert ov.apply(PinChange(Fence(0, 10), "p1", ("c", "a"), replace=True))
    assert ov.pinned == ("c", "a")
    # The same record redelivered, or an older one, changes nothing.
    assert not ov.apply(PinChange(Fence(0, 10), "p1", ("c", "a"), replace=True))
    assert not ov.apply(PinChange(Fence(0, 9), "old", ("d",), replace=True))
    assert ov.pinned == ("c", "a")
    assert ov.apply(PinChange(Fence(0, 11), "u1", ("c",), replace=False))
    assert ov.pinned == ("a",)
    assert ov.apply(PinChange(Fence(0, 12), "u2", (), replace=False))
    assert ov.pinned == () and ov.pins_fence == Fence(0, 12)


def test_hidden_flags_are_fenced_per_image_and_unhidden_remembers_its_fence():
    ov = HotelOverrides()
    assert ov.apply(HideChange("a", Fence(0, 5), "h1", hidden=True))
    assert ov.apply(HideChange("b", Fence(0, 6), "h2", hidden=True))
    assert ov.hidden == {"a", "b"}
    assert ov.apply(HideChange("a", Fence(0, 7), "u1", hidden=False))
    # A late redelivery of the hide (offset 5) cannot hide "a" again.
    assert not ov.apply(HideChange("a", Fence(0, 5), "h1", hidden=True))
    assert ov.hidden == {"b"}


def test_overrides_round_trip_through_their_stored_form():
    ov = HotelOverrides()
    ov.apply(PinChange(Fence(1, 3), "p", ("x", "y"), replace=True))
    ov.apply(HideChange("z", Fence(1, 4), "h", hidden=True))
    ov.apply(HideChange("w", Fence(1, 5), "u", hidden=False))
    back = decode_overrides(encode_overrides(ov))
    assert back == ov
    assert decode_overrides(None) == HotelOverrides() and decode_overrides(b"") == HotelOverrides()


def build_document(hotel_id, records, overrides=None) -> bytes:
    """The document of a hotel holding ``records`` as they read back from Redis."""
    return HotelState.from_records(hotel_id, records, RankingConfig(), overrides).render()


def test_document_without_overrides_keeps_the_order_and_adds_reasons():
    doc = orjson.loads(build_document("h-1", RECORDS))
    ranked = HotelState.from_records("h-1", RECORDS, RankingConfig()).ranked()[0]
    assert [i["image_id"] for i in doc["images"]] == ranked
    assert all(isinstance(i["reason"], str) and i["reason"] for i in doc["images"])
    assert doc["images"][0]["reason"].startswith("hero: ")  # the hero rule names its rule (issue 22)
    assert doc["pinned_missing"] == []
    # The read contract's fields are unchanged.
    assert set(doc["images"][0]) == {"image_id", "url", "area", "area_confidence", "aesthetic", "reason"}


def test_document_with_pins_and_hidden_images():
    ov = HotelOverrides()
    ov.apply(PinChange(Fence(0, 10), "p", ("d", "gone", "b"), replace=True))
    ov.apply(HideChange("a", Fence(0, 11), "h", hidden=True))
    records = [*RECORDS, record("e", 3.0, "bathroom", 5, deleted=True)]
    doc = orjson.loads(build_document("h-1", records, overrides=ov))
    shown = [(i["image_id"], i["reason"]) for i in doc["images"]]
    assert shown == [("d", "pinned"), ("b", "pinned"), ("c", "first swimming_pool")]
    assert doc["pinned_missing"] == ["gone"]


def test_pinned_ids_without_a_photo_are_logged(caplog):
    ov = HotelOverrides()
    ov.apply(PinChange(Fence(0, 10), "p", ("gone", "a"), replace=True))
    with caplog.at_level("INFO", logger="galleryrank.consumer.state.hotel"):
        build_document("h-7", RECORDS, overrides=ov)
    lines = [r.getMessage() for r in caplog.records if "pinned images not shown" in r.getMessage()]
    assert lines == ["hotel h-7: pinned images not shown (no photo, deleted or hidden): ['gone']"]
