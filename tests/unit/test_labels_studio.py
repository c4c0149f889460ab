"""Label Studio I/O: tasks and config in its import format, and its JSON export read back.

tests/fixtures/labelstudio/ was made with a real Label Studio 1.23.2 (SQLite): tasks.json and
label_config.xml written by consumer/labels/studio.py, imported through its API into a project
with that config (predictions shown as pre-annotations), annotated through its API, and
export.json is its own `exportType=JSON` answer, unedited (re-indented). The slow round trip
against a live instance is tests/integration/test_labelstudio_roundtrip.py.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from galleryrank.consumer.labels.studio import import_export, label_config, queue_tasks
from galleryrank.consumer.stream.events import LabelArea, LabelRating, encode_event, parse_event

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "labelstudio"


def test_config_names_the_controls_the_tasks_use():
    root = ET.fromstring(label_config(["bathroom", "swimming pool"]))
    choices = root.find("Choices")
    assert choices is not None and choices.get("name") == "area" and choices.get("choice") == "single"
    assert [c.get("value") for c in choices] == ["bathroom", "swimming pool", "not_property"]
    rating = root.find("Rating")
    assert rating is not None and rating.get("maxRating") == "10" and rating.get("toName") == "image"


def _item(hotel, image, score, position, model_area="kitchen", confidence=0.5):
    return {
        "hotel_id": hotel,
        "image_id": image,
        "url": f"http://x/{hotel}/{image}.jpg",
        "position": position,
        "model_area": model_area,
        "area_confidence": confidence,
        "model_version": "m1",
        "score": score,
        "why": ["hero"] if position == 1 else [],
    }


def test_tasks_follow_the_review_queue_across_hotels_with_the_models_area_as_pre_annotation():
    items = [_item("h1", "a", 2.0, 1), _item("h2", "b", 13.0, 3, "bathroom", 0.4), _item("h1", "c", 2.0, 2)]
    tasks = queue_tasks(items)
    assert [(t["data"]["hotel_id"], t["data"]["image_id"]) for t in tasks] == [("h2", "b"), ("h1", "a"), ("h1", "c")]
    first = tasks[0]
    assert first["data"]["image"] == "http://x/h2/b.jpg" and first["data"]["model_version"] == "m1"
    pred = first["predictions"][0]
    assert pred["result"][0] == {
        "from_name": "area",
        "to_name": "image",
        "type": "choices",
        "value": {"choices": ["bathroom"]},
    }
    assert pred["score"] == 0.4 and tasks[1]["data"]["why"] == "hero"
    assert queue_tasks(items, limit=2) == tasks[:2]


def test_fixture_tasks_are_what_the_writer_writes():
    tasks = json.loads((FIXTURES / "tasks.json").read_text())
    assert {"image", "hotel_id", "image_id", "model_version"} <= set(tasks[0]["data"])
    assert (FIXTURES / "label_config.xml").read_text() == label_config(["bathroom", "bedroom", "facade", "kitchen"])


def test_a_real_export_becomes_valid_label_events_once():
    export = json.loads((FIXTURES / "export.json").read_text())
    result = import_export(export)
    areas = [e for e in result.events if isinstance(e, LabelArea)]
    ratings = [e for e in result.events if isinstance(e, LabelRating)]
    assert len(areas) == len(ratings) == len(export) == 4
    by_image = {(e.hotel_id, e.image_id): e.area for e in areas}
    assert by_image[("hotel-2", "img-0")] == "not_property" and by_image[("hotel-1", "img-1")] == "kitchen"
    assert {e.reviewer for e in result.events} == {"labelstudio-1"}
    assert all(e.url.startswith("http://photos.example.com/") and e.model_version == "m-live-1" for e in areas)
    for ev in result.events:
        assert parse_event(*encode_event(ev)) == ev
    # importing the same export again gives the same event ids: the export and the scorer count them once
    assert [e.event_id for e in import_export(export).events] == [e.event_id for e in result.events]
    assert len({e.event_id for e in result.events}) == len(result.events)


def test_cancelled_unknown_and_foreign_results_are_skipped_with_a_reason():
    export = json.loads((FIXTURES / "export.json").read_text())
    export[0]["annotations"][0]["was_cancelled"] = True
    export[1]["annotations"][0]["completed_by"] = {"id": 7, "email": "ann@example.com"}  # newer exports: an object
    export[2]["annotations"][0]["result"].append({"from_name": "box", "type": "rectanglelabels", "value": {}})
    export[3]["data"].pop("hotel_id")
    result = import_export(export, areas={"bathroom", "bedroom", "facade"})
    assert result.skipped == {
        "cancelled": 1,
        "unknown_area": 2,
        "result_rectanglelabels": 1,
        "task_without_hotel_image_url": 1,
    }
    assert {e.reviewer for e in result.events} == {"labelstudio-7", "labelstudio-1"}
