"""Training data: a folder-per-area tagger set, AVA-style vote files, augmentation.

Both training and validation end in ``models.preprocess.preprocess_image``, the
function serving uses; training applies idealo's augmentation first (resize to
256x256, random 224 crop, horizontal flip; the tagger also rotates, as in the
PyParis 2018 talk). Validation images get exactly the serving preprocessing.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .preprocess import INPUT_SIZE, preprocess_image

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
RESIZE_BEFORE_CROP = 256  # idealo: resize 256x256, random crop 224


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int | None = None  # area index (tagger)
    votes: tuple[float, ...] | None = None  # 10 vote counts (aesthetic)


def open_image(path: Path) -> Image.Image:
    img: Image.Image = Image.open(path)
    img = ImageOps.exif_transpose(img)
    return img.convert("RGB")


def scan_tagger_folder(data_dir: str | Path, classes: list[str] | None = None) -> tuple[list[Sample], list[str]]:
    """``data_dir/<area>/*.jpg`` -> samples and class list (sorted folder names unless given)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"tagger data folder {root} does not exist")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders and not classes:
        raise ValueError(
            f"{root} has no area sub-folders: the tagger learns from DATA/<area>/*.jpg, one folder per area "
            "(e.g. DATA/bathroom/1.jpg, DATA/kitchen/2.jpg)"
        )
    classes = list(classes) if classes else folders
    unknown = set(folders) - set(classes)
    if unknown:
        raise ValueError(f"folders {sorted(unknown)} are not among the classes {classes}")
    samples = [
        Sample(p, label=i)
        for i, c in enumerate(classes)
        if (root / c).is_dir()
        for p in sorted((root / c).rglob("*"))
        if p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    if not samples:
        raise ValueError(f"no images under {root}/<class>/")
    return samples, classes


def parse_vote_rows(labels_file: str | Path) -> list[tuple[str, tuple[float, ...]]]:
    """AVA-style labels -> (image id, 10 vote counts).

    Accepted: AVA.txt rows (index, image id, 10 counts, tags..., challenge), rows of
    image id + 10 counts (spaces or commas), or idealo's JSON list of
    {"image_id": ..., "label": [10 counts]}.
    """
    path = Path(labels_file)
    text = path.read_text()
    if text.lstrip().startswith("["):
        return [(str(r["image_id"]), tuple(float(v) for v in r["label"])) for r in json.loads(text)]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts or parts[0].startswith("#"):
            continue
        if len(parts) >= 15:  # AVA.txt: index, id, 10 counts, 2 semantic tags, challenge id
            image_id, counts = parts[1], parts[2:12]
        elif len(parts) == 11:
            image_id, counts = parts[0], parts[1:11]
        else:
            raise ValueError(f"{path}:{n}: expected 'image_id c1..c10' or an AVA.txt row, got {len(parts)} fields")
        try:
            rows.append((image_id, tuple(float(c) for c in counts)))
        except ValueError:
            if n == 1:  # header line
                continue
            raise
    return rows


def scan_aesthetic(labels_file: str | Path, images_dir: str | Path) -> tuple[list[Sample], int]:
    """Samples for rows whose image exists (``<id>.<ext>`` in images_dir); also the number missing."""
    root = Path(images_dir)
    by_stem = {p.stem: p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    samples, missing = [], 0
    for image_id, votes in parse_vote_rows(labels_file):
        p = by_stem.get(Path(image_id).stem)
        if p is None or sum(votes) <= 0:
            missing += 1
            continue
        samples.append(Sample(p, votes=votes))
    if not samples:
        raise ValueError(f"none of the images in {labels_file} were found in {root}")
    return samples, missing


def data_fingerprint(samples: list[Sample], root: Path | None = None) -> str:
    """sha256 over (relative path, file content hash, label/votes) of every sample, in a stable order."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.path)):
        rel = str(s.path.relative_to(root)) if root and s.path.is_relative_to(root) else s.path.name
        h.update(rel.encode())
        h.update(hashlib.sha256(s.path.read_bytes()).digest())
        h.update(repr((s.label, s.votes)).encode())
    return h.hexdigest()


class TrainAugment:
    """idealo's training transform: resize 256x256, random 224 crop, flip; optional rotation."""

    def __init__(self, size: int = INPUT_SIZE, rotate_degrees: float = 0.0, seed: int | None = None):
        self.size = size
        self.resize_to = round(size * RESIZE_BEFORE_CROP / INPUT_SIZE)
        self.rotate_degrees = rotate_degrees
        self.rng = random.Random(seed)

    def __call__(self, img: Image.Image) -> np.ndarray:
        img = img.convert("RGB").resize((self.resize_to, self.resize_to), Image.Resampling.BILINEAR)
        if self.rotate_degrees:
            angle = self.rng.uniform(-self.rotate_degrees, self.rotate_degrees)
            img = img.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        x = self.rng.randint(0, self.resize_to - self.size)
        y = self.rng.randint(0, self.resize_to - self.size)
        img = img.crop((x, y, x + self.size, y + self.size))
        if self.rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return preprocess_image(img, self.size)


def serving_transform(size: int = INPUT_SIZE) -> Callable[[Image.Image], np.ndarray]:
    return lambda img: preprocess_image(img, size)


class ImageDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Samples -> (uint8 image tensor, target). Target: area index or normalised 10-bin distribution."""

    def __init__(self, samples: list[Sample], transform: Callable[[Image.Image], np.ndarray], cache: bool = True):
        self.samples = samples
        self.transform = transform
        self._cache: dict[int, Image.Image] | None = {} if cache else None  # decoded once: small data sets on CPU

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, i: int) -> Image.Image:
        if self._cache is None:
            return open_image(self.samples[i].path)
        if i not in self._cache:
            img = open_image(self.samples[i].path)
            img.thumbnail((512, 512))  # augmentation resizes to 256 anyway; bounds cache memory
            self._cache[i] = img
        return self._cache[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.samples[i]
        x = torch.from_numpy(self.transform(self.image(i)))
        if s.votes is not None:
            v = torch.tensor(s.votes, dtype=torch.float32)
            return x, v / v.sum()
        return x, torch.tensor(s.label, dtype=torch.long)
