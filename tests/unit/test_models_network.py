"""Backbone registry, GalleryNet heads, checkpoints, CAM, zero-shot table, ONNX parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from galleryrank.models import preprocess_image
from galleryrank.models.backbones import WeightsMismatchError, create_backbone, list_backbones
from galleryrank.models.cam import class_activation_maps, normalise_map, overlay, upsample
from galleryrank.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from galleryrank.models.export import export_graph, parity
from galleryrank.models.network import create_model, seeded_orthogonal
from galleryrank.models.zeroshot import DEFAULT_AREAS, IMAGENET_TO_AREA, area_matrix, imagenet_categories


def test_registry_lists_the_four_backbones():
    assert list_backbones() == ["efficientnet_lite0", "mobilenet_v2", "mobilenet_v3_large", "vgg16"]
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet9000")


def test_torchvision_backbone_weights_only_from_a_named_file(tmp_path):
    import torchvision

    with pytest.raises(ValueError, match="local"):
        create_backbone("mobilenet_v3_large")  # "default": nothing ships, nothing is downloaded
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "mnv3.pth"
    torch.save(ref.state_dict(), path)
    bb = create_backbone("mobilenet_v3_large", str(path))
    assert torch.equal(bb.features[0][0].weight, ref.features[0][0].weight)
    model = create_model("mobilenet_v3_large", ["a", "b"], weights=str(path))
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    dist, area, emb = model(x)
    assert dist.shape == (2, 10) and area.shape == (2, 2) and emb.shape == (2, 128)
    bad = tmp_path / "bad.pth"
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), bad)
    with pytest.raises(WeightsMismatchError):
        create_backbone("mobilenet_v3_large", str(bad))


def test_embedding_projection_is_seeded_and_orthonormal():
    q = seeded_orthogonal(128, 1280)
    assert torch.equal(q, seeded_orthogonal(128, 1280))
    torch.testing.assert_close(q @ q.T, torch.eye(128), atol=1e-5, rtol=0)


def test_zero_shot_table_uses_real_imagenet_names_once():
    cats = set(imagenet_categories())
    names = [n for ns in IMAGENET_TO_AREA.values() for n in ns]
    assert set(names) <= cats and len(names) == len(set(names))
    m = area_matrix(DEFAULT_AREAS)
    assert m.shape == (1000, len(DEFAULT_AREAS)) and (m.sum(1) == 1).all()
    assert m[:, DEFAULT_AREAS.index("other")].sum() == 1000 - len(names)
    with pytest.raises(ValueError):
        area_matrix(["bedroom", "bathroom"])  # needs 'other'


def test_head_only_checkpoint_round_trip(tmp_path):
    model = create_model("efficientnet_lite0", ["pool", "other"], seed=3)
    path = tmp_path / "heads.pt"
    meta = save_checkpoint(model, path, include_backbone=False, data_fingerprint="abc")
    assert path.stat().st_size < 1_500_000  # heads only: the backbone comes from its package
    stored = read_checkpoint(path)
    assert stored["backbone_weights"] == "package" and stored["data_fingerprint"] == "abc"
    assert stored["model_version"] == meta["model_version"]
    loaded, _ = load_checkpoint(path)
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.inference_mode():
        for a, b in zip(model(x), loaded(x)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def default_model():
    from galleryrank.models.defaults import load_default_model

    return load_default_model()[0]


@pytest.fixture(scope="module")
def photo_batch():
    return np.stack([preprocess_image(Image.fromarray(getattr(data, n)())) for n in ("coffee", "chelsea")])


def test_cam_shape_and_normalisation(default_model, photo_batch):
    idx = [DEFAULT_AREAS.index("restaurant"), DEFAULT_AREAS.index("bedroom")]
    cams, probs = class_activation_maps(default_model, photo_batch, idx)
    assert cams.shape == (2, 2, 7, 7) and probs.shape == (2, len(DEFAULT_AREAS))
    heat = upsample(cams[0, 0], (300, 200))
    assert heat.shape == (200, 300) and heat.min() == 0.0 and heat.max() == pytest.approx(1.0)
    assert (normalise_map(np.ones((7, 7))) == 0).all()
    # the espresso cup sits in the middle of the coffee photo: its restaurant map peaks away from the corners
    peak = np.unravel_index(cams[0, 0].argmax(), (7, 7))
    assert 1 <= peak[0] <= 5 and 1 <= peak[1] <= 5
    img = Image.fromarray(data.coffee()).resize((300, 200))
    assert overlay(img, heat).size == (300, 200)


def test_cam_of_linear_head_sums_to_class_score(photo_batch):
    """Zhou et al.: the spatial mean of CAM_c equals the class logit minus its bias."""
    model = create_model("efficientnet_lite0", ["a", "b", "c"], seed=1).eval()
    cams, _ = class_activation_maps(model, photo_batch, [0, 1, 2])
    with torch.inference_mode():
        logits = model.run(torch.from_numpy(photo_batch))["area_logits"].numpy()
    bias = model.area_head.fc.bias.detach().numpy()
    np.testing.assert_allclose(cams.mean(axis=(2, 3)), logits - bias, atol=1e-4)


def test_onnx_parity(default_model, photo_batch, tmp_path):
    path = export_graph(default_model, tmp_path / "g.onnx")
    rng = np.random.default_rng(0)
    batch = np.concatenate([photo_batch, rng.integers(0, 256, (3, 3, 224, 224), dtype=np.uint8)])
    diffs = parity(default_model, path, batch)
    assert diffs["max"] < 1e-4, diffs
