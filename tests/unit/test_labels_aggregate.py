"""Label aggregation, the hotel split and the export layout (pure: no broker, no HTTP)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from galleryrank.consumer.labels.aggregate import aggregate, summary
from galleryrank.consumer.labels.export import ExportOptions, photo_name, split_hotels, write_export
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.stream.events import LabelArea, LabelRating


def area(eid, hotel, image, reviewer, value, at="2026-12-01T10:00:00Z", url=None):
    return LabelArea(eid, hotel, image, reviewer, "m1", url or f"http://x/{hotel}/{image}.jpg", value, at)


def rating(eid, hotel, image, reviewer, value, at="2026-12-01T10:00:00Z"):
    return LabelRating(eid, hotel, image, reviewer, "m1", f"http://x/{hotel}/{image}.jpg", value, at)


def test_majority_agreement_and_latest_vote_per_reviewer():
    events = [
        area("e1", "h1", "i1", "ann", "kitchen", "2026-12-01T10:00:00Z"),
        area("e2", "h1", "i1", "ann", "bathroom", "2026-12-01T10:05:00Z"),  # ann corrects herself
        area("e3", "h1", "i1", "bob", "bathroom"),
        area("e4", "h1", "i1", "cat", "bedroom"),
        area("e4", "h1", "i1", "cat", "bedroom"),  # redelivered: counts once
        area("e0", "h1", "i1", "ann", "facade", "2026-12-01T09:00:00Z"),  # late, older: ignored
    ]
    p = aggregate(events)[("h1", "i1")]
    assert p.area_votes == {"ann": "bathroom", "bob": "bathroom", "cat": "bedroom"}
    assert p.area() == ("bathroom", 2 / 3)
    assert p.area_conflict()


def test_tie_is_a_conflict_without_area_and_ratings_make_a_histogram():
    events = [
        area("a", "h1", "i2", "ann", "kitchen"),
        area("b", "h1", "i2", "bob", "bedroom"),
        rating("c", "h1", "i2", "ann", 7),
        rating("d", "h1", "i2", "bob", 8),
        rating("e", "h1", "i2", "cat", 8),
        rating("f", "h1", "i2", "cat", 3, "2026-12-02T00:00:00Z"),  # cat changes her mind
    ]
    photos = aggregate(events)
    p = photos[("h1", "i2")]
    assert p.area() == (None, 0.5)
    assert p.histogram() == [0, 0, 1, 0, 0, 0, 1, 1, 0, 0]
    s = summary(photos)
    assert (s["area_ties"], s["raters"], s["rating_votes"]) == (1, 3, 3)


def test_hotel_split_keeps_every_hotel_on_one_side_and_is_stable():
    hotels = [f"h{i}" for i in range(50)]
    split = split_hotels(hotels, 0.2, seed=1)
    assert sum(v == "test" for v in split.values()) == 10
    grown = split_hotels([*hotels, "h-new"], 0.2, seed=1)
    # adding a hotel moves at most one other hotel across (the order is by a per-hotel hash)
    assert sum(split[h] != grown[h] for h in hotels) <= 1
    assert set(split_hotels(["a", "b"], 0.01).values()) == {"train", "test"}
    assert set(split_hotels(["a"], 0.5).values()) == {"train"}


def _jpeg(colour) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), colour, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_export_layout_votes_file_and_manifest(tmp_path):
    events = []
    bodies = {}
    for h in range(6):
        # any list of areas: a platform's own, with a space in its name
        for i, (a, colour) in enumerate([("swimming pool", 40), ("kitchen", 200)]):
            ev = area(f"e{h}{i}", f"hotel-{h}", f"img/{i}", "ann", a)
            events.append(ev)
            events.append(rating(f"r{h}{i}", f"hotel-{h}", f"img/{i}", "bob", 6 + i))
            bodies[ev.url] = _jpeg(colour + h)
    events.append(area("np", "hotel-0", "logo", "ann", "not_property", url="http://x/logo.jpg"))
    bodies["http://x/logo.jpg"] = _jpeg(128)
    events.append(area("gone", "hotel-1", "gone", "ann", "kitchen", url="http://x/gone.jpg"))
    photos = aggregate(events)
    out = tmp_path / "export"
    manifest = write_export(out, photos, bodies, {"http://x/gone.jpg": "http_404"}, Settings(), ExportOptions(0.34, 0))
    test_hotels = set(manifest["hotels"]["test"])
    assert test_hotels and not test_hotels & set(manifest["hotels"]["train"])
    for split in ("train", "test"):
        for f in (out / split / "areas").rglob("*.jpg"):
            row = next(r for r in manifest["photos"] if r["file"] == f.name)
            assert (row["split"] == "test") == (row["hotel_id"] in test_hotels) and split == row["split"]
            assert f.parent.name == row["area"]
    rows = (out / "train" / "votes.txt").read_text().split("\n")[:-1]
    assert all(len(r.split()) == 11 for r in rows)
    from galleryrank.models.data import scan_aesthetic, scan_tagger_folder

    samples, classes = scan_tagger_folder(out / "train" / "areas")
    assert classes == ["kitchen", "swimming pool"] and len(samples) == 2 * len(manifest["hotels"]["train"])
    rated, missing = scan_aesthetic(out / "train" / "votes.txt", out / "train" / "images")
    assert missing == 0 and len(rated) == len(samples)
    assert manifest["failed_downloads"] == {"http://x/gone.jpg": "http_404"}
    assert manifest["summary"]["not_property"] == 1
    assert not any(p.name.startswith(photo_name("hotel-0", "logo")) for p in out.rglob("*") if "areas" in p.parts)
    assert json.loads((out / "manifest.json").read_text())["split"] == manifest["split"]
