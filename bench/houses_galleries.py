"""houses-dev photos scored by the default model, as ranking candidates (benchmarks only).

Ten houses merged into one "hotel" give a gallery of ~40 real listing photos (bathroom,
bedroom, facade, kitchen). Backbone features come from models.features' cache, so
scoring them again (e.g. with another quality blend) costs only the heads.
houses-dev: Ahmed & Moustafa, IJCCI 2016 (bench/houses.py). Never committed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.houses import AREAS, house_number, houses_files

HOUSES_PER_GALLERY = 10
# A quality variant: (model, raw quality features (N, Q)) -> aesthetic logits (N, 10).
Scorer = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ScoredPhotos:
    paths: list[Path]
    true_area: list[str]  # the folder's area (labels are a little noisy, SOURCE.md)
    aesthetic: np.ndarray  # (N,)
    area_probs: np.ndarray  # (N, C), columns in ``areas``
    areas: tuple[str, ...]
    embedding: np.ndarray  # (N, D)
    phash: list[int]
    raw_quality: np.ndarray  # (N, Q) raw quality features


def gallery_houses(root: Path, galleries: int, seed: int = 0) -> list[list[int]]:
    """``galleries`` disjoint groups of HOUSES_PER_GALLERY house numbers, drawn with ``seed``."""
    houses = sorted({house_number(p) for p in houses_files(root)})
    rng = np.random.default_rng(seed)
    picked = rng.permutation(houses)[: galleries * HOUSES_PER_GALLERY].tolist()
    return [picked[i * HOUSES_PER_GALLERY : (i + 1) * HOUSES_PER_GALLERY] for i in range(galleries)]


def gallery_paths(root: Path, houses: list[int]) -> list[Path]:
    return [
        root / area / f"house{h:03d}.jpg"
        for h in houses
        for area in AREAS
        if (root / area / f"house{h:03d}.jpg").exists()
    ]


def default_logits(model, pooled: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    return model.aesthetic_logits(pooled, quality)


def score_photos(model, paths: list[Path], cache_dir: str, logits: Scorer = default_logits) -> ScoredPhotos:
    from galleryrank.models.dedup import _pack
    from galleryrank.models.features import cached_features

    feats = cached_features(model, paths, views=0, cache_dir=cache_dir, progress=False)
    pooled, raw = torch.from_numpy(feats.pooled[:, 0]), torch.from_numpy(feats.quality[:, 0])
    with torch.inference_mode():
        q = model.quality_features.standardise(raw)
        out = model.heads(pooled, q)
        dist = logits(model, pooled, q).float().softmax(1).numpy()
        area = out["area_logits"].float().softmax(1).numpy()
        emb = out["embedding"].float().numpy()
    return ScoredPhotos(
        paths=list(paths),
        true_area=[p.parent.name for p in paths],
        aesthetic=dist @ np.arange(1, 11, dtype=np.float64),
        area_probs=area,
        areas=tuple(model.areas),
        embedding=emb,
        phash=[int(h) for h in _pack(feats.phash)],
        raw_quality=raw.numpy(),
    )


def candidates(photos: ScoredPhotos, idx: list[int] | np.ndarray | None = None):
    """ranking.Candidate per photo (image id = area/houseNNN)."""
    from galleryrank.ranking import Candidate

    rows = range(len(photos.paths)) if idx is None else idx
    return [
        Candidate(
            image_id=f"{photos.paths[i].parent.name}/{photos.paths[i].stem}",
            aesthetic=float(photos.aesthetic[i]),
            area_probs=photos.area_probs[i],
            embedding=photos.embedding[i],
            phash=photos.phash[i],
        )
        for i in rows
    ]
