"""The one image preprocessing used by serving and by training (after augmentation).

Images are squashed to ``size x size`` with bilinear resampling, as NIMA and idealo
do at test time (no aspect-preserving crop: a hotel photo's edges carry the room).
The result stays uint8; the backbone's mean/std normalisation happens inside the
network's forward (``models.network.GalleryNet``), so ONNX Runtime and the GPU get
4x fewer bytes and every backend normalises identically.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

INPUT_SIZE = 224  # EfficientNet-Lite0's ImageNet resolution (timm pretrained_cfg)


def preprocess_image(img: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """RGB, squash-resize to (size, size), return uint8 array of shape (3, size, size)."""
    rgb = img.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1))


def preprocess_batch(images: list[Image.Image], size: int = INPUT_SIZE) -> np.ndarray:
    """Stack ``preprocess_image`` results into a (N, 3, size, size) uint8 batch."""
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.uint8)
    return np.stack([preprocess_image(im, size) for im in images])
