"""Synthetic hotel galleries with known truth, for tests and the benchmark.

What they imitate (and why):
- skewed area counts like real hotels: many bedrooms, few pools; some hotels
  have no pool or kitchen at all;
- a quality spread per hotel (hotel mean ~ N(5.3, 0.5), image sd 0.8 on the
  1..10 scale) with area offsets (pools and facades tend to photograph well);
- a tagger that is right ~88 % of the time (idealo reports 86-91 % top-1),
  less confident when wrong, confusing the pairs people confuse
  (foyer/reception, bathroom/pool, restaurant/kitchen);
- embeddings clustered by the tagger's area belief (same-area cosine ~0.3,
  distinct images well below the 0.9 duplicate threshold);
- injected near duplicates = perturbed copies of an image: a re-save
  (cosine 0.97-0.995, pHash within 0-4 bits), a re-shot angle (cosine
  0.92-0.97, pHash far: only the embedding catches it), or a copy whose
  embedding is unknown (only the pHash catches it). Originals of copies are
  drawn in proportion to exp(aesthetic): the copies that matter are of good
  photos, which a pure aesthetic order would put side by side. Missing
  embeddings / hashes (2 % each) only hit images without copies, so every
  injected pair shares at least one signal (else nobody could find it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .types import Candidate

AREAS = (
    "bedroom",
    "bathroom",
    "foyer",
    "reception",
    "restaurant",
    "swimming_pool",
    "kitchen",
    "facade",
    "other",
)
AREA_SHARE = np.array([0.34, 0.16, 0.04, 0.05, 0.08, 0.04, 0.04, 0.07, 0.18])
AREA_QUALITY_OFFSET = np.array([0.2, -0.2, 0.0, -0.1, 0.0, 0.4, -0.2, 0.3, -0.3])
OPTIONAL_AREAS = {"swimming_pool": 0.4, "kitchen": 0.5}  # chance a hotel lacks it
CONFUSED_WITH = {
    "foyer": "reception",
    "reception": "foyer",
    "bathroom": "swimming_pool",
    "swimming_pool": "bathroom",
    "restaurant": "kitchen",
    "kitchen": "restaurant",
}
TAGGER_ACCURACY = 0.88
EMBEDDING_DIM = 128
AREA_CENTROID_WEIGHT = 0.55  # -> same-area cosine ~0.3


@dataclass(frozen=True)
class SyntheticGallery:
    candidates: list[Candidate]
    areas: tuple[str, ...]
    true_area: np.ndarray  # (N,) int index into areas
    aesthetic: np.ndarray  # (N,) the score the ranker sees (also the truth here)
    group: np.ndarray  # (N,) duplicate group: an original and its copies share one
    is_copy: np.ndarray  # (N,) bool: injected copy


def synthetic_gallery(
    n: int,
    rng: np.random.Generator,
    *,
    duplicate_rate: float = 0.1,
    missing_embedding_rate: float = 0.02,
    missing_phash_rate: float = 0.02,
    id_prefix: str = "img",
) -> SyntheticGallery:
    n_copies = int(round(n * duplicate_rate)) if n > 1 else 0
    n_orig = n - n_copies
    n_areas = len(AREAS)

    share = AREA_SHARE.copy()
    for area, p_missing in OPTIONAL_AREAS.items():
        if rng.random() < p_missing:
            share[AREAS.index(area)] = 0.0
    share = rng.dirichlet(share / share.sum() * 30 + 1e-9)
    true_area = rng.choice(n_areas, size=n_orig, p=share)
    hotel_mean = rng.normal(5.3, 0.5)
    aesthetic = np.clip(hotel_mean + AREA_QUALITY_OFFSET[true_area] + rng.normal(0, 0.8, n_orig), 1.0, 10.0)

    probs = np.stack([_tagger_output(a, rng) for a in true_area]) if n_orig else np.zeros((0, n_areas))
    # The embedding comes from the same network as the tagger, so it knows the
    # area only as well as the tagger does: its area part follows the tagger's
    # probabilities, not the truth.
    centroids = _unit(rng.normal(size=(n_areas, EMBEDDING_DIM)))
    noise = _unit(rng.normal(size=(n_orig, EMBEDDING_DIM)))
    area_part = _unit(probs @ centroids) if n_orig else np.zeros((0, EMBEDDING_DIM))
    embeddings = _unit(AREA_CENTROID_WEIGHT * area_part + np.sqrt(1 - AREA_CENTROID_WEIGHT**2) * noise)
    phash = rng.integers(0, 2**64, size=n_orig, dtype=np.uint64)

    rows = [
        dict(
            area=true_area[i],
            aesthetic=aesthetic[i],
            probs=probs[i],
            embedding=embeddings[i],
            phash=int(phash[i]),
            group=i,
            copy=False,
        )
        for i in range(n_orig)
    ]
    if n_copies:
        weights = np.exp(aesthetic - aesthetic.max())
        originals = rng.choice(n_orig, size=n_copies, p=weights / weights.sum())
        rows += [_copy(rows[o], rng) for o in originals]
    has_copies = {r["group"] for r in rows if r["copy"]}
    for row in rows:
        if row["group"] in has_copies:
            continue  # keep the signal a copy shares with its original: a pair sharing none is undetectable
        if row["embedding"] is not None and rng.random() < missing_embedding_rate:
            row["embedding"] = None
        if row["phash"] is not None and rng.random() < missing_phash_rate:
            row["phash"] = None
    order = rng.permutation(len(rows))  # the consumer's input order carries no meaning
    rows = [rows[i] for i in order]
    candidates = [
        Candidate(
            image_id=f"{id_prefix}-{i:05d}",
            aesthetic=float(r["aesthetic"]),
            area_probs=np.asarray(r["probs"], dtype=np.float32),
            embedding=None if r["embedding"] is None else np.asarray(r["embedding"], dtype=np.float32),
            phash=r["phash"],
        )
        for i, r in enumerate(rows)
    ]
    return SyntheticGallery(
        candidates=candidates,
        areas=AREAS,
        true_area=np.array([r["area"] for r in rows], dtype=np.int64),
        aesthetic=np.array([r["aesthetic"] for r in rows], dtype=np.float64),
        group=np.array([r["group"] for r in rows], dtype=np.int64),
        is_copy=np.array([r["copy"] for r in rows], dtype=bool),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _tagger_output(true_area: int, rng: np.random.Generator) -> np.ndarray:
    n_areas = len(AREAS)
    name = AREAS[true_area]
    probs = rng.dirichlet(np.ones(n_areas))
    if rng.random() < TAGGER_ACCURACY:
        predicted, confidence = true_area, rng.uniform(0.55, 0.98)
    else:
        if name in CONFUSED_WITH and rng.random() < 0.7:
            predicted = AREAS.index(CONFUSED_WITH[name])
        else:
            predicted = int(rng.choice([a for a in range(n_areas) if a != true_area]))
        confidence = rng.uniform(0.35, 0.6)
        probs[true_area] += 1.0  # the true area stays the runner-up
        probs /= probs.sum()
    probs = (1.0 - confidence) * probs
    probs[predicted] += confidence
    return probs / probs.sum()


def _copy(original: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    kind = rng.choice(["resave", "reshot", "hash_only"], p=[0.5, 0.35, 0.15])
    embedding, phash = original["embedding"], original["phash"]
    if kind == "resave":
        embedding = _perturb(embedding, rng.uniform(0.97, 0.995), rng)
        phash = _flip_bits(phash, int(rng.integers(0, 5)), rng)
    elif kind == "reshot":
        embedding = _perturb(embedding, rng.uniform(0.92, 0.97), rng)
        phash = _flip_bits(phash, int(rng.integers(16, 33)), rng)
    else:
        embedding = None
        phash = _flip_bits(phash, int(rng.integers(0, 7)), rng)
    probs = original["probs"] * rng.uniform(0.9, 1.1, size=len(original["probs"]))
    return dict(
        area=original["area"],
        aesthetic=float(np.clip(original["aesthetic"] + rng.normal(0, 0.1), 1.0, 10.0)),
        probs=probs / probs.sum(),
        embedding=embedding,
        phash=phash,
        group=original["group"],
        copy=True,
    )


def _perturb(vector: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly ``cosine`` to ``vector``."""
    direction = rng.normal(size=vector.shape)
    direction -= (direction @ vector) * vector
    direction /= np.linalg.norm(direction)
    return cosine * vector + np.sqrt(1.0 - cosine**2) * direction


def _flip_bits(value: int, n_bits: int, rng: np.random.Generator) -> int:
    for bit in rng.choice(64, size=n_bits, replace=False):
        value ^= 1 << int(bit)
    return value
