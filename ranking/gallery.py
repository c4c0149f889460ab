"""Candidates as numpy arrays in one canonical order.

Every strategy works on a :class:`Gallery`, whose rows are sorted by aesthetic
(best first) and then by ``image_id``. Because ``np.argmax`` returns the first
maximum, any tie in a greedy step is broken by that order, so a replay of the
same candidates (in any input order) gives the same gallery, byte for byte.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .types import Candidate

_HASH_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class Gallery:
    areas: tuple[str, ...]
    image_ids: tuple[str, ...]  # canonical order
    source_index: np.ndarray  # (N,) int64: row -> index into the caller's candidates
    aesthetic: np.ndarray  # (N,) float64, non-increasing
    area_probs: np.ndarray  # (N, C) float32
    top_area: np.ndarray  # (N,) int64: argmax of area_probs
    embeddings: np.ndarray  # (N, D) float32, zero rows where unknown
    has_embedding: np.ndarray  # (N,) bool
    phash: np.ndarray  # (N,) uint64, 0 where unknown
    has_phash: np.ndarray  # (N,) bool
    # Rows an editor pinned, in the order they take the first positions (ranking.editorial).
    pinned: tuple[int, ...] = ()
    # (N,) int64: each row's near-duplicate cluster root (its first row), when the caller
    # keeps an incremental index (ranking.duplicates.DuplicateIndex); None = derived here.
    clusters: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Per-gallery memo of derived arrays (the near-duplicate pass is the costly one);
    # a fresh dict per Gallery, so it never outlives the candidates it describes.
    cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def size(self) -> int:
        return len(self.image_ids)

    def quality(self, scale: float) -> np.ndarray:
        """Aesthetic in units of ``scale`` points below the best image (best = 0)."""
        if self.size == 0:
            return np.zeros(0)
        return (self.aesthetic - self.aesthetic[0]) / scale


def build_gallery(candidates: Sequence[Candidate], areas: Sequence[str]) -> Gallery:
    n, n_areas = len(candidates), len(areas)
    if len(set(areas)) != n_areas:
        raise ValueError("areas must be unique")
    # Non-finite scores (NaN, inf) sort last and count as the worst image.
    raw = [float(c.aesthetic) for c in candidates]
    keyed = sorted(
        (-a if math.isfinite(a) else math.inf, c.image_id, i) for i, (a, c) in enumerate(zip(raw, candidates))
    )
    order = np.fromiter((k[2] for k in keyed), dtype=np.int64, count=n)
    ordered = [candidates[i] for i in order]
    if len({c.image_id for c in ordered}) != n:
        raise ValueError("image_id values must be unique")
    aesthetic = _finite(np.array([raw[i] for i in order], dtype=np.float64))

    try:
        area_probs = (
            np.array([c.area_probs for c in ordered], dtype=np.float32)  # 3x faster than np.stack
            if n
            else np.zeros((0, n_areas), dtype=np.float32)
        )
    except ValueError as error:
        raise ValueError(f"area_probs must all have shape ({n_areas},): {error}") from None
    if area_probs.ndim != 2 or area_probs.shape[1] != n_areas:
        raise ValueError(f"area_probs must have shape ({n_areas},), got {area_probs.shape[1:]}")

    embeddings, has_embedding = _embeddings(ordered)
    has_phash = np.array([c.phash is not None for c in ordered], dtype=bool)
    phash = np.array([(c.phash or 0) & _HASH_MASK for c in ordered], dtype=np.uint64)
    return Gallery(
        areas=tuple(areas),
        image_ids=tuple(c.image_id for c in ordered),
        source_index=order,
        aesthetic=aesthetic,
        area_probs=area_probs,
        top_area=area_probs.argmax(axis=1) if n and n_areas else np.zeros(n, dtype=np.int64),
        embeddings=embeddings,
        has_embedding=has_embedding,
        phash=phash,
        has_phash=has_phash,
    )


def ordered_gallery(
    areas: Sequence[str],
    image_ids: Sequence[str],
    aesthetic: np.ndarray,
    area_probs: np.ndarray,
    embeddings: np.ndarray,
    has_embedding: np.ndarray,
    phash: np.ndarray,
    has_phash: np.ndarray,
    source_index: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    normalised: bool = False,
) -> Gallery:
    """A Gallery from columns the caller already put in canonical order (aesthetic
    descending, then image_id; non-finite scores last), e.g. a cached hotel's arrays:
    the same Gallery ``build_gallery`` would make, without per-candidate Python work.
    The arrays become the Gallery's (``embeddings`` is normalised in place, unless the
    caller says its rows are unit already, zero where ``has_embedding`` is False)."""
    n = len(image_ids)
    area_probs = np.asarray(area_probs, dtype=np.float32)
    embeddings = np.asarray(embeddings, dtype=np.float32)
    has_embedding = np.asarray(has_embedding, dtype=bool).copy()
    if has_embedding.any() and not normalised:
        _normalise(embeddings, has_embedding)
    return Gallery(
        areas=tuple(areas),
        image_ids=tuple(image_ids),
        source_index=np.arange(n, dtype=np.int64) if source_index is None else source_index,
        aesthetic=_finite(np.asarray(aesthetic, dtype=np.float64)),
        area_probs=area_probs,
        top_area=area_probs.argmax(axis=1) if n and len(areas) else np.zeros(n, dtype=np.int64),
        embeddings=embeddings,
        has_embedding=has_embedding,
        phash=np.asarray(phash, dtype=np.uint64),
        has_phash=np.asarray(has_phash, dtype=bool),
        clusters=clusters,
    )


def _finite(aesthetic: np.ndarray) -> np.ndarray:
    """Non-finite scores (NaN, inf) count as the worst image."""
    bad = ~np.isfinite(aesthetic)
    if bad.any():
        aesthetic[bad] = aesthetic[~bad].min() - 1.0 if (~bad).any() else 0.0
    return aesthetic


def _normalise(embeddings: np.ndarray, has: np.ndarray) -> None:
    """Re-normalise rows in place (cheap) so cosine == dot product; zero vectors count as unknown."""
    norms = np.linalg.norm(embeddings, axis=1)
    has &= norms > 1e-12
    embeddings[has] /= norms[has, None]


def _embeddings(ordered: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
    n = len(ordered)
    has = np.fromiter((c.embedding is not None for c in ordered), dtype=bool, count=n)
    if not has.any():
        return np.zeros((n, 1), dtype=np.float32), has
    try:  # one np.array call: per-row Python work dominates at gallery sizes
        known = np.array([c.embedding for c in ordered if c.embedding is not None], dtype=np.float32)
    except ValueError as error:
        raise ValueError(f"embeddings must all have the same shape (D,): {error}") from None
    if known.ndim != 2:
        raise ValueError(f"embeddings must have shape (D,), got {known.shape[1:]}")
    if has.all():
        embeddings = known  # a fresh array: ours to normalise in place
    else:
        embeddings = np.zeros((n, known.shape[1]), dtype=np.float32)
        embeddings[has] = known
    _normalise(embeddings, has)
    return embeddings, has
