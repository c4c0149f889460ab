"""Reviewers' label events (docs/labelling.md): parsing, fencing, and their effect on a hotel's gallery."""

from __future__ import annotations

import orjson
import pytest

from galleryrank.consumer.state.hotel import AREA_SET, NOT_PROPERTY_REASON, HotelState
from galleryrank.consumer.state.overrides import AreaChange, HotelOverrides, RatingChange, decode_overrides
from galleryrank.consumer.state.records import Fence, ImageChange
from galleryrank.consumer.stream.events import InvalidEvent, LabelArea, LabelRating, encode_event, parse_event
from galleryrank.consumer.stream.produce import label_area, label_rating
from galleryrank.ranking.types import RankingConfig


def _label(**fields) -> bytes:
    body = {
        "event_id": "l-1",
        "type": "label.area",
        "hotel_id": "h-1",
        "image_id": "img-1",
        "reviewer": "ann",
        "model_version": "m-1",
        "url": "https://cdn.example/1.jpg",
        "area": "bathroom",
    }
    body.update(fields)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def test_label_events_round_trip_through_the_parser():
    for event in (
        label_area("h-1", "img-1", "swimming pool", reviewer="ann", model_version="m-1", url="https://c/1.jpg"),
        label_rating("h-1", "img-1", 7, reviewer="bob", model_version="m-1", url="https://c/1.jpg"),
    ):
        key, value = encode_event(event)
        assert parse_event(key, value) == event
    assert isinstance(parse_event(b"h-1", _label(area="not_property")), LabelArea)
    rating = parse_event(b"h-1", _label(type="label.rating", area=None, rating=10))
    assert isinstance(rating, LabelRating) and rating.rating == 10


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"reviewer": None}, "missing_field"),
        ({"reviewer": "a b"}, "invalid_reviewer"),
        ({"reviewer": 7}, "wrong_type"),
        ({"model_version": None}, "missing_field"),
        ({"url": None}, "missing_field"),
        ({"url": "file:///etc/passwd"}, "bad_scheme"),
        ({"area": None}, "missing_field"),
        ({"area": "Bathroom"}, "invalid_area"),
        ({"area": "x" * 65}, "invalid_area"),
        ({"area": "kitchen; DROP"}, "invalid_area"),
        ({"area": ["kitchen"]}, "wrong_type"),
        ({"image_id": None}, "missing_field"),
        ({"type": "label.rating", "area": None}, "missing_field"),
        ({"type": "label.rating", "rating": 0}, "invalid_rating"),
        ({"type": "label.rating", "rating": 11}, "invalid_rating"),
        ({"type": "label.rating", "rating": True}, "wrong_type"),
        ({"type": "label.rating", "rating": 7.5}, "wrong_type"),
        ({"type": "label.rating", "rating": "7"}, "wrong_type"),
    ],
)
def test_bad_label_events_get_a_reason(fields, reason):
    parsed = parse_event(b"h-1", _label(**fields))
    assert isinstance(parsed, InvalidEvent) and parsed.reason == reason and parsed.event_id == "l-1"


def test_a_label_keyed_by_another_hotel_is_refused():
    parsed = parse_event(b"h-2", _label())
    assert isinstance(parsed, InvalidEvent) and parsed.reason == "key_mismatch"


def test_area_labels_are_fenced_per_image_and_ratings_count_each_reviewer_once():
    ov = HotelOverrides()
    assert ov.apply(AreaChange("a", Fence(0, 5, "labels"), "l1", "bathroom", "ann"))
    assert not ov.apply(AreaChange("a", Fence(0, 5, "labels"), "l1", "bathroom", "ann"))  # redelivery
    assert not ov.apply(AreaChange("a", Fence(0, 4, "labels"), "l0", "kitchen", "bob"))  # late
    assert ov.areas["a"].area == "bathroom"
    assert ov.apply(AreaChange("a", Fence(0, 6, "labels"), "l2", "bedroom", "bob"))
    assert ov.areas["a"].area == "bedroom" and ov.areas["a"].reviewer == "bob"
    assert ov.apply(RatingChange("a", Fence(0, 7, "labels"), "r1", "ann", 6))
    assert not ov.apply(RatingChange("a", Fence(0, 7, "labels"), "r1", "ann", 6))  # duplicate: not counted twice
    assert ov.apply(RatingChange("a", Fence(0, 8, "labels"), "r2", "ann", 8))  # ann changes her mind
    assert ov.apply(RatingChange("a", Fence(0, 9, "labels"), "r3", "bob", 3))
    assert ov.rating_count("a") == 2 and ov.ratings["a"]["ann"].rating == 8
    # Stored and read back: the same state (the late label's id is remembered too).
    from galleryrank.consumer.state.overrides import encode_overrides

    back = decode_overrides(encode_overrides(ov))
    assert back.areas == ov.areas and back.ratings == ov.ratings
    assert not back.apply(AreaChange("a", Fence(0, 9, "labels"), "l0", "kitchen", "bob"))


def _image(image_id: str, offset: int, aesthetic: float, probs: dict[str, float]) -> ImageChange:
    return ImageChange(
        image_id, Fence(0, offset, "hotel-images"), f"e{offset}", url=f"http://p/{image_id}.jpg",
        aesthetic=aesthetic, area_probs=probs, model_version="m-1",
    )  # fmt: skip


def _doc(state: HotelState) -> dict:
    return orjson.loads(state.render())


def test_an_area_label_changes_the_gallery_at_once_keeps_the_models_area_and_survives_a_reload():
    state = HotelState("h-1", RankingConfig())
    state.apply(_image("k", 1, 8.0, {"kitchen": 0.98, "bathroom": 0.02}))  # really a bathroom
    state.apply(_image("b", 2, 6.0, {"bedroom": 0.9, "bathroom": 0.1}))
    state.apply(_image("x", 3, 7.0, {"kitchen": 0.6, "bathroom": 0.4}))  # a stock photo
    before = {i["image_id"]: i for i in _doc(state)["images"]}
    assert before["k"]["area"] == "kitchen" and "model_area" not in before["k"]

    assert state.apply(AreaChange("k", Fence(0, 1, "labels"), "l1", "bathroom", "ann")).applied
    assert state.apply(AreaChange("x", Fence(0, 2, "labels"), "l2", "not_property", "ann")).applied
    doc = _doc(state)
    entry = {i["image_id"]: i for i in doc["images"]}
    assert entry["k"]["area"] == "bathroom" and entry["k"]["area_confidence"] == 1.0
    assert entry["k"]["model_area"] == "kitchen" and entry["k"]["model_area_confidence"] == 0.98
    assert AREA_SET in entry["k"]["reason"]
    assert [i["image_id"] for i in doc["images"]][-1] == "x" and entry["x"]["reason"] == NOT_PROPERTY_REASON
    assert "model_area" not in entry["b"] and AREA_SET not in entry["b"]["reason"]

    # A re-upload (new scores) keeps the label; a state rebuilt from Redis renders the same bytes.
    state.apply(_image("k", 9, 5.0, {"kitchen": 0.99, "bathroom": 0.01}))
    entry = {i["image_id"]: i for i in _doc(state)["images"]}
    assert entry["k"]["area"] == "bathroom" and entry["k"]["model_area_confidence"] == 0.99
    from galleryrank.consumer.state.overrides import encode_overrides

    rebuilt = HotelState.from_redis(
        "h-1",
        RankingConfig(),
        {k.encode(): v for k, v in state.raw.items()},
        encode_overrides(state.overrides),
        None,
        None,
    )
    assert rebuilt.render() == state.render()
