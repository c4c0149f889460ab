"""In-graph quality features (models/quality.py) and the default quality score, on small generated images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from galleryrank.models import load_scoring_model, preprocess_image
from galleryrank.models.checkpoint import load_checkpoint, save_checkpoint
from galleryrank.models.network import create_model
from galleryrank.models.quality import FEATURE_NAMES, NUM_QUALITY_FEATURES, QualityFeatures


def scene(seed: int = 0, size: int = 224) -> np.ndarray:
    """A photo-like RGB scene: coloured blocks, edges and fine texture (uint8 HWC)."""
    rng = np.random.default_rng(seed)
    a = np.zeros((size, size, 3), np.float32) + rng.uniform(60, 200, 3)
    for _ in range(25):
        y, x = rng.integers(0, size - 20, 2)
        h, w = rng.integers(10, 80, 2)
        a[y : y + h, x : x + w] = rng.uniform(0, 255, 3)
    a += rng.normal(0, 6, a.shape)
    return a.clip(0, 255).astype(np.uint8)


def feats(*images: np.ndarray) -> dict[str, np.ndarray]:
    x = torch.from_numpy(np.stack([np.asarray(i).transpose(2, 0, 1) for i in images]).copy())
    with torch.inference_mode():
        raw = QualityFeatures().raw(x).numpy()
    return {n: raw[:, i] for i, n in enumerate(FEATURE_NAMES)}


def test_features_move_the_right_way():
    img = scene()
    blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(3)))
    dark = (img * 0.2).astype(np.uint8)
    grey = np.repeat(img.mean(2, keepdims=True), 3, 2).astype(np.uint8)
    f = feats(img, blurred, dark, grey)
    assert f["log_laplacian_var"][0] > f["log_laplacian_var"][1] + 1  # sharp > blurred
    assert f["brightness"][2] < f["brightness"][0] and f["dark_clip"][2] > f["dark_clip"][0]
    assert f["colourfulness"][3] < 0.01 < f["colourfulness"][0]  # grey has no colour
    assert f["contrast"][2] < f["contrast"][0]
    assert np.isfinite(np.stack(list(f.values()))).all() and len(f) == NUM_QUALITY_FEATURES


def test_tilt_is_zero_for_level_lines_and_grows_at_45_degrees():
    yy, xx = np.mgrid[:224, :224]
    level = ((yy // 16) % 2 * 255).astype(np.uint8)  # horizontal stripes
    slanted = (((yy + xx) // 16) % 2 * 255).astype(np.uint8)
    f = feats(*(np.repeat(a[..., None], 3, 2) for a in (level, slanted)))
    assert f["tilt"][0] < 0.02 and f["tilt"][1] > 0.3


def test_flat_images_have_flat_share_and_no_crash():
    flat = np.full((224, 224, 3), 128, np.uint8)
    f = feats(flat, scene())
    assert f["flat_share"][0] == pytest.approx(1.0) and f["flat_share"][1] < 0.9
    assert all(np.isfinite(v).all() for v in f.values())


def test_quality_features_export_to_onnx(tmp_path):
    import onnxruntime as ort

    q = QualityFeatures().eval()
    x = torch.from_numpy(np.stack([scene(1).transpose(2, 0, 1), scene(2).transpose(2, 0, 1)]).copy())
    torch.onnx.export(
        q,
        (x,),
        str(tmp_path / "q.onnx"),
        dynamo=False,
        opset_version=17,
        input_names=["x"],
        output_names=["q"],
        dynamic_axes={"x": {0: "n"}, "q": {0: "n"}},
    )
    got = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"x": x.numpy()}
    )[0]
    np.testing.assert_allclose(got, q(x).detach().numpy(), atol=1e-3, rtol=1e-4)


@pytest.fixture(scope="module")
def scorer():
    return load_scoring_model()


def test_default_score_puts_non_photos_below_photos(scorer):
    """Generated non-photos (a text page, a star field, a flat grey texture) score below a real photo."""
    from PIL import ImageDraw
    from skimage import data

    page = Image.new("RGB", (400, 400), "white")
    d = ImageDraw.Draw(page)
    for y in range(10, 400, 18):
        d.text((10, y), "lorem ipsum hotel room booking price per night", fill="black")
    stars = np.zeros((400, 400), np.uint8)
    rng = np.random.default_rng(3)
    stars[rng.integers(0, 400, 300), rng.integers(0, 400, 300)] = 255
    flat = Image.fromarray((128 + rng.normal(0, 3, (400, 400))).clip(0, 255).astype(np.uint8))
    imgs = [Image.fromarray(data.astronaut()), Image.fromarray(data.chelsea()), page, Image.fromarray(stars), flat]
    s = scorer.score(np.stack([preprocess_image(i) for i in imgs])).aesthetic
    assert s[:2].min() > s[2:].max(), s


def test_blur_and_darkness_lower_the_default_score(scorer):
    from skimage import data

    img = Image.fromarray(data.coffee())
    worse = [img.filter(ImageFilter.GaussianBlur(6)), Image.fromarray((np.asarray(img) * 0.15).astype(np.uint8))]
    s = scorer.score(np.stack([preprocess_image(i) for i in [img, *worse]])).aesthetic
    assert s[0] > s[1] and s[0] > s[2], s


def test_checkpoint_from_before_the_quality_features_loads_and_scores_the_same(tmp_path):
    """A 0.1 head-only checkpoint (aesthetic Dense over 1280 features, no quality buffers) still loads."""
    model = create_model("efficientnet_lite0", area_head="zeroshot")
    with torch.no_grad():
        model.aesthetic_head[-1].weight.normal_(0, 0.05)
    path = tmp_path / "old.pt"
    save_checkpoint(model, path, include_backbone=False)
    ckpt = torch.load(path, weights_only=True)
    nf = model.backbone.num_features
    sd = ckpt["state_dict"]
    sd["aesthetic_head.1.weight"] = sd["aesthetic_head.1.weight"][:, :nf].clone()  # the old shape
    for k in [
        k
        for k in sd
        if k.startswith(("quality_features.", "aesthetic_blend.")) or k.endswith(("area_bias", "temperature"))
    ]:
        del sd[k]
    torch.save(ckpt, path)
    loaded, _ = load_checkpoint(path)
    assert loaded.aesthetic_head[-1].weight.shape[1] == nf + NUM_QUALITY_FEATURES
    assert float(loaded.aesthetic_head[-1].weight[:, nf:].abs().sum()) == 0
    x = torch.from_numpy(scene().transpose(2, 0, 1)[None].copy())
    with torch.inference_mode():
        pooled = loaded.run(x)["pooled"]
        old_logits = pooled @ sd["aesthetic_head.1.weight"].T + sd["aesthetic_head.1.bias"]
        np.testing.assert_allclose(loaded.run(x)["aesthetic_logits"].numpy(), old_logits.numpy(), atol=1e-4)
