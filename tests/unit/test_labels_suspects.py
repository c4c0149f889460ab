"""`labels suspects` on a generated set with deliberately flipped labels: it must find them."""

from __future__ import annotations

import numpy as np
import pytest

from galleryrank.consumer.labels.sheet import contact_sheet
from galleryrank.consumer.labels.suspects import LabelledPhoto, find_suspects, queue_scores, sheet_items
from tests.label_photos import KINDS as CLASSES
from tests.label_photos import texture


@pytest.fixture(scope="module")
def flipped_set(tmp_path_factory):
    """120 photos, 30 per class; 6 of them (5 %) carry another class's label, plus a copy of one
    photo under another class."""
    root = tmp_path_factory.mktemp("suspects")
    rng = np.random.default_rng(7)
    photos, flipped = [], set()
    flip_at = set(rng.choice(120, 6, replace=False).tolist())
    for i in range(120):
        kind = CLASSES[i % 4]
        path = root / f"p{i:03d}.jpg"
        texture(kind, rng).save(path, quality=90)
        label = kind
        if i in flip_at:
            label = CLASSES[(i % 4 + 1 + int(rng.integers(0, 3))) % 4]
            flipped.add(f"h{i % 10} i{i}")
        photos.append(LabelledPhoto(path, label, f"h{i % 10}", f"i{i}", "train" if i % 10 else "test"))
    # an exact copy of a photo under another class (a leak and a conflict)
    copy = root / "copy.jpg"
    copy.write_bytes(photos[0].path.read_bytes())
    photos.append(LabelledPhoto(copy, CLASSES[1], "h-copy", "c0", "train"))
    flipped.add("h-copy c0")  # a wrong label too: the copy of a stripes photo filed as checks
    return photos, flipped


def test_suspects_find_the_flipped_labels(flipped_set, tmp_path, monkeypatch):
    monkeypatch.setenv("GALLERYRANK_FEATURES_BACKEND", "torch")  # no ONNX export for 121 small images
    photos, flipped = flipped_set
    report = find_suspects(photos, folds=5, cache_dir=str(tmp_path / "cache"), progress=False)
    found = {i["photo"] for i in report["label_issues"]}
    recall = len(found & flipped) / len(flipped)
    precision = len(found & flipped) / max(len(found), 1)
    print(
        f"suspects: {len(found)} flagged, recall {recall:.2f}, precision {precision:.2f}, oof acc {report['out_of_fold_accuracy']}"
    )
    assert recall >= 6 / 7
    assert precision >= 0.5
    for issue in report["label_issues"]:
        if issue["photo"] in flipped:
            assert issue["suggested"] != issue["given"]
    dup = [g for g in report["duplicates"] if "h-copy c0" in g["photos"]]
    assert dup and dup[0]["kind"] == "exact" and dup[0]["across_classes"] and dup[0]["across_splits"]
    scores = queue_scores(report, photos)
    assert flipped & set(scores) and all(0 <= s <= 1 for s in scores.values())
    assert scores["h-copy c0"] >= 0.5
    sheet = contact_sheet(sheet_items(report), tmp_path / "sheet.png")
    assert sheet is not None and sheet.stat().st_size > 1000
