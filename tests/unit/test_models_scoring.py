"""The serving interface the consumer uses: preprocessing, load_scoring_model, ScoreOutput."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from galleryrank.models import INPUT_SIZE, ScoreOutput, load_scoring_model, preprocess_image
from galleryrank.models.backbones import WeightsMismatchError, load_state_dict_by_order
from galleryrank.models.zeroshot import DEFAULT_AREAS


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return {name: Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")}


@pytest.fixture(scope="module")
def model():
    return load_scoring_model()


def test_preprocess_squashes_to_uint8_chw():
    img = Image.new("L", (640, 320), color=200)  # grey, wide: converted to RGB and squashed, not cropped
    arr = preprocess_image(img)
    assert arr.dtype == np.uint8 and arr.shape == (3, INPUT_SIZE, INPUT_SIZE)
    assert (arr == 200).all()
    half = Image.new("RGB", (400, 100))
    half.paste((255, 0, 0), (0, 0, 200, 100))  # left half red: stays the left half after squashing
    out = preprocess_image(half, size=32)
    assert out[0, :, :15].min() == 255 and out[0, :, 17:].max() == 0


def test_score_contract(model, photos):
    batch = np.stack([preprocess_image(p) for p in photos.values()])
    out = model.score(batch)
    assert isinstance(out, ScoreOutput)
    n = len(photos)
    assert model.areas == DEFAULT_AREAS and model.input_size == INPUT_SIZE
    assert out.aesthetic_dist.shape == (n, 10) and out.aesthetic_dist.dtype == np.float32
    np.testing.assert_allclose(out.aesthetic_dist.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.aesthetic, out.aesthetic_dist @ np.arange(1, 11), atol=1e-4)
    assert ((out.aesthetic >= 1) & (out.aesthetic <= 10)).all()
    assert out.area_probs.shape == (n, len(DEFAULT_AREAS)) and out.area_probs.dtype == np.float32
    np.testing.assert_allclose(out.area_probs.sum(1), 1.0, atol=1e-5)
    assert out.embedding.shape == (n, model.embedding_dim) and out.embedding.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.embedding, axis=1), 1.0, atol=1e-5)
    assert model.model_version and model.backend == "torch" and model.device == "cpu"


def test_zero_shot_prior_reads_objects(model, photos):
    """The ImageNet backbone loaded correctly: a cat is 'other', an espresso cup is 'restaurant'."""
    out = model.score(np.stack([preprocess_image(photos["chelsea"]), preprocess_image(photos["coffee"])]))
    areas = [model.areas[i] for i in out.area_probs.argmax(1)]
    assert areas == ["other", "restaurant"]
    assert out.area_probs[1, model.areas.index("restaurant")] > 0.8


def test_score_is_deterministic_and_batch_independent(model, photos):
    batch = np.stack([preprocess_image(p) for p in photos.values()])
    full = model.score(batch)
    single = model.score(batch[1:2])
    np.testing.assert_allclose(single.area_probs[0], full.area_probs[1], atol=1e-5)
    np.testing.assert_allclose(single.embedding[0], full.embedding[1], atol=1e-5)


def test_score_rejects_wrong_input(model):
    with pytest.raises(TypeError):
        model.score(np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32))
    with pytest.raises(ValueError):
        model.score(np.zeros((1, 3, 100, 100), dtype=np.uint8))
    empty = model.score(np.zeros((0, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8))
    assert empty.area_probs.shape == (0, len(DEFAULT_AREAS)) and len(empty) == 0


def test_torch_module_is_the_scoring_network(model, photos):
    batch = np.stack([preprocess_image(photos["coffee"])])
    with torch.inference_mode():
        dist, area, emb = model.torch_module()(torch.from_numpy(batch))
    np.testing.assert_allclose(area.numpy(), model.score(batch).area_probs, atol=1e-6)


def test_weight_mapping_checks_every_shape():
    target = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    good = {"a": torch.ones(3, 4), "b": torch.zeros(3), "c": torch.ones(2, 3), "d": torch.zeros(2)}
    load_state_dict_by_order(target, good, "test")
    assert torch.equal(target[0].weight, torch.ones(3, 4))
    bad = dict(good, c=torch.ones(3, 2))
    with pytest.raises(WeightsMismatchError, match="tensor #2"):
        load_state_dict_by_order(target, bad, "test")
    with pytest.raises(WeightsMismatchError, match="3 tensors"):
        load_state_dict_by_order(target, dict(list(good.items())[:3]), "test")
