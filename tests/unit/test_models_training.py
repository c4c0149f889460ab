"""Learning test on a small synthetic set: two-phase training, duplicate-free split, resume,
evaluation report, checkpoint round trip, and training/serving preprocessing identity."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from galleryrank.models import load_scoring_model, preprocess_image
from galleryrank.models.checkpoint import load_checkpoint, read_checkpoint
from galleryrank.models.data import ImageDataset, scan_tagger_folder, serving_transform
from galleryrank.models.dedup import perceptual_hashes, split_without_leaks
from galleryrank.models.evaluate import evaluate
from galleryrank.models.train import train_tagger

CLASSES = ["stripes", "checker", "blobs"]  # chance = 1/3


def synthetic(kind: str, rng: np.random.Generator, size: int = 160) -> Image.Image:
    """Random colours, scales and phases per image so the set has no accidental copies."""
    bg, fg = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    if kind == "stripes":
        w = int(rng.integers(6, 20))
        for y in range(-w + int(rng.integers(0, w)), size, 2 * w):
            d.rectangle([0, y, size, y + w - 1], fill=fg)
    elif kind == "checker":
        w = int(rng.integers(10, 30))
        for i in range(0, size, w):
            for j in range(0, size, w):
                if (i // w + j // w) % 2:
                    d.rectangle([i, j, i + w - 1, j + w - 1], fill=fg)
    else:
        for _ in range(int(rng.integers(3, 8))):
            r, (x, y) = int(rng.integers(8, 30)), rng.integers(0, size, 2)
            d.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noisy = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, (size, size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    for c in CLASSES:
        (root / c).mkdir()
        for i in range(12):
            synthetic(c, rng).save(root / c / f"{c}{i}.png")
    # the same photo uploaded twice (a byte copy) must be removed, not split
    (root / "stripes" / "copy_of_0.png").write_bytes((root / "stripes" / "stripes0.png").read_bytes())
    return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cpu0 = time.process_time()
    result = train_tagger(
        dataset, out, epochs_heads=3, epochs_all=1, lr_heads=1e-2, batch_size=16, progress=False, device="cpu"
    )
    result["cpu_seconds"] = time.process_time() - cpu0  # all threads' CPU time, immune to a busy machine
    return result


def test_tagger_learns_far_above_chance(trained):
    assert trained["best_val"]["accuracy"] >= 0.8  # chance is 0.33
    accs = [h["val_accuracy"] for h in trained["history"]]
    assert [h["phase"] for h in trained["history"]] == [1, 1, 1, 2]
    assert max(accs) >= 0.8 and trained["cpu_seconds"] < 60


def test_split_removed_the_copy_and_has_no_leaks(trained, dataset):
    split = trained["split"]
    assert split["n_input"] == 37 and split["n_exact_removed"] == 1
    assert any("copy_of_0" in r or "stripes0" in r for r in split["removed"])
    assert split["n_train"] + split["n_val"] == 36


def test_near_duplicate_groups_never_straddle():
    """Real photos and their cropped, re-compressed copies: default pHash + embedding thresholds."""
    from skimage import data

    names = [
        "astronaut",
        "chelsea",
        "coffee",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "retina",
        "colorwheel",
        "camera",
        "moon",
    ]
    base = [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]

    def near_copy(im: Image.Image) -> Image.Image:
        w, h = im.size
        buf = io.BytesIO()
        im.crop((w // 50, h // 50, w - w // 50, h - h // 50)).save(buf, "JPEG", quality=70)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    images = base + [near_copy(im) for im in base[:4]]
    labels = [0] * len(images)
    emb = load_scoring_model().score(np.stack([preprocess_image(im) for im in images])).embedding
    train, val, report = split_without_leaks(labels, perceptual_hashes(images), emb, val_fraction=0.3, seed=3)
    assert report.n_exact_removed == 0 and report.n_near_groups >= 4
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(images)
    for k in range(4):  # photo k and its near copy 10+k end on the same side
        assert (k in val) == (10 + k in val)
    assert val, "something must go to validation"


def test_checkpoint_round_trip_serves_same_scores(trained, dataset):
    meta = read_checkpoint(trained["checkpoint"])
    assert meta["areas"] == sorted(CLASSES) and meta["backbone"] == "efficientnet_lite0"
    best_phase = trained["history"][trained["best_epoch"] - 1]["phase"]
    assert meta["backbone_weights"] == ("included" if best_phase == 2 else "package")  # phase 2 changes it
    assert meta["data_fingerprint"] == trained["data_fingerprint"]
    assert meta["preprocessing"]["input_size"] == 224 and meta["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert meta["head_shapes"]["area_head.fc.weight"] == [3, 1280]
    model, meta2 = load_checkpoint(trained["checkpoint"])
    scorer = load_scoring_model(trained["checkpoint"])
    assert scorer.areas == sorted(CLASSES) and scorer.model_version == meta["model_version"]
    img = Image.open(dataset / "checker" / "checker3.png")
    batch = preprocess_image(img)[None]
    with torch.inference_mode():
        ref = model(torch.from_numpy(batch))[1].numpy()
    np.testing.assert_allclose(scorer.score(batch).area_probs, ref, atol=1e-6)


def test_validation_preprocessing_is_serving_preprocessing(dataset):
    samples, classes = scan_tagger_folder(dataset)
    ds = ImageDataset(samples[:3], serving_transform())
    for i in range(3):
        x, y = ds[i]
        expected = preprocess_image(Image.open(samples[i].path))
        assert x.dtype == torch.uint8 and np.array_equal(x.numpy(), expected)
        assert int(y) == samples[i].label


def test_resume_continues_from_last_epoch(dataset, tmp_path):
    first = train_tagger(
        dataset, tmp_path, epochs_heads=1, epochs_all=0, batch_size=16, progress=False, dedup_cosine=None
    )
    second = train_tagger(
        dataset, tmp_path, epochs_heads=2, epochs_all=0, batch_size=16, progress=False, dedup_cosine=None, resume=True
    )
    assert len(second["history"]) == 2
    assert second["history"][0] == first["history"][0]  # epoch 1 not retrained
    assert second["split"] == first["split"]


def test_evaluate_report_and_confusion_png(trained, dataset, tmp_path):
    report = evaluate(trained["checkpoint"], data_dir=dataset, report_path=tmp_path / "eval.json")
    tag = report["tagger"]
    assert tag["n"] == 37 and tag["top1"] >= 0.8
    cm = np.array(tag["confusion_matrix"])
    assert cm.sum() == 37 and np.trace(cm) == round(tag["top1"] * 37)
    assert set(tag["per_class"]) == set(CLASSES)
    assert (tmp_path / "eval.confusion.png").stat().st_size > 1000
    assert json.loads((tmp_path / "eval.json").read_text())["tagger"]["top1"] == tag["top1"]


def test_cli_explain_and_export(trained, dataset, tmp_path):
    from galleryrank.models.cli import models_app

    runner = CliRunner()
    img = dataset / "blobs" / "blobs1.png"
    res = runner.invoke(
        models_app,
        [
            "explain",
            str(img),
            "--checkpoint",
            trained["checkpoint"],
            "--area",
            "stripes",
            "--out",
            str(tmp_path / "cams"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["images"][0]["overlays"]) == {out["images"][0]["predicted"], "stripes"}
    res = runner.invoke(
        models_app, ["export", "--checkpoint", trained["checkpoint"], "--out", str(tmp_path / "m.onnx")]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["max_abs_diff"]["max"] < 1e-4


def test_vote_file_formats(tmp_path):
    from galleryrank.models.data import parse_vote_rows

    ava = tmp_path / "AVA.txt"
    ava.write_text("1 953619 0 1 5 17 38 36 15 6 5 1 1 22 1396\n2 953958 10 7 15 26 26 21 10 8 1 2 1 21 1396\n")
    assert parse_vote_rows(ava) == [
        ("953619", (0, 1, 5, 17, 38, 36, 15, 6, 5, 1)),
        ("953958", (10, 7, 15, 26, 26, 21, 10, 8, 1, 2)),
    ]
    plain = tmp_path / "votes.csv"
    plain.write_text("image_id,c1,c2,c3,c4,c5,c6,c7,c8,c9,c10\nimg-1,0,0,0,0,1,2,3,2,1,0\n")
    assert parse_vote_rows(plain) == [("img-1", (0, 0, 0, 0, 1, 2, 3, 2, 1, 0))]
    idealo = tmp_path / "labels.json"
    idealo.write_text(json.dumps([{"image_id": "a", "label": [1] * 10}]))
    assert parse_vote_rows(idealo) == [("a", (1.0,) * 10)]


def test_train_and_evaluate_aesthetic(tmp_path):
    """AVA-style votes on blurred copies: the EMD head trains, evaluation reports NIMA's metrics."""
    from PIL import ImageFilter

    from galleryrank.models.train import train_aesthetic

    rng = np.random.default_rng(5)
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for i in range(16):
        level = i % 4  # sharp ... very blurred
        img = synthetic(CLASSES[i % 3], rng).filter(ImageFilter.GaussianBlur(level * 2))
        img.save(images / f"im{i}.png")
        votes = np.zeros(10, int)
        votes[8 - 2 * level] = 10
        votes[7 - 2 * level] = 5
        rows.append(f"im{i} " + " ".join(map(str, votes)))
    labels = tmp_path / "votes.txt"
    labels.write_text("\n".join(rows) + "\n")
    result = train_aesthetic(
        labels,
        images,
        tmp_path / "run",
        epochs_heads=2,
        epochs_all=0,
        lr_heads=1e-2,
        batch_size=8,
        progress=False,
        dedup_cosine=None,
    )
    assert result["rows_without_image"] == 0 and result["best_epoch"] in (1, 2)
    assert set(result["best_val"]) == {"loss", "emd", "srcc"}
    report = evaluate(result["checkpoint"], labels=labels, images_dir=images, report_path=tmp_path / "aes.json")
    aes = report["aesthetic"]
    assert aes["n"] == 16 and 0 <= aes["emd"] < 1 and 0 <= aes["accuracy_2class"] <= 1
    assert -1 <= aes["lcc"] <= 1 and -1 <= aes["srcc"] <= 1
