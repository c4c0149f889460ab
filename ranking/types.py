"""The two value types the consumer hands to :func:`ranking.rank`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One scored image of a hotel gallery.

    ``area_probs`` columns follow the ``areas`` sequence passed to ``rank()``.
    """

    image_id: str
    aesthetic: float  # mean of the predicted 1..10 distribution
    area_probs: np.ndarray  # (C,) float32, sums to 1
    embedding: np.ndarray | None = None  # (D,) float32, L2-normalised; None if unknown
    phash: int | None = None  # 64-bit perceptual hash (imagehash dhash/phash as int); None if unknown


# Hero areas of hotel practice under the names models use: facade/exterior,
# bedroom/room, pool, view, lobby (the default tagger's "foyer").
HERO_AREAS = ("facade", "exterior", "bedroom", "room", "swimming_pool", "pool", "view", "lobby", "foyer")


@dataclass(frozen=True)
class RankingConfig:
    """How to order a gallery. Defaults are the ones chosen by ``bench/ranking_bench.py``.

    ``diversity`` is the one trade-off knob shared by every strategy:
    0 = pure aesthetic order, 1 = diversity only. Quality enters the strategies
    in aesthetic points relative to the gallery's best image, divided by
    ``quality_scale`` (so "how many points is a new area worth" does not depend
    on how good the hotel's photos are overall).
    """

    strategy: str = "default"  # a name in ranking.STRATEGIES
    diversity: float = 0.85  # trade-off in [0, 1]; 0.85 = the area whose turn it is is worth ~5.7 quality_scale points
    quality_scale: float = 1.0  # aesthetic points that count as "1" of quality
    head_size: int = 24  # positions diversified carefully; the rest follow in aesthetic order

    # Similarity used by MMR and DPP: (1 - w) * embedding cosine + w * cosine of
    # the area probabilities (rows without an embedding use the area part only).
    area_similarity: float = 0.5

    # Per-area caps inside the head: at most this many images whose top area is
    # that area (None = no cap). ``area_caps`` overrides per area name.
    max_per_area: int | None = None
    area_caps: Mapping[str, int] = field(default_factory=dict)

    # How much covering each area is worth (xQuAD, PM-2), in quality units; areas
    # not named weigh 1.0. Only areas present in the gallery count.
    area_weights: Mapping[str, float] = field(default_factory=dict)

    # Hero rule (hotel practice: exterior, a room, the pool, the view, the lobby
    # first): the first image is the best one whose top area is in ``hero_areas``,
    # tagged with probability >= ``hero_confidence``, when it scores within
    # ``hero_tolerance`` aesthetic points of the best image; otherwise the strategy
    # picks it. Names the model lacks are ignored. Empty tuple = no hero rule.
    hero_areas: tuple[str, ...] = HERO_AREAS
    hero_tolerance: float = 1.0
    hero_confidence: float = 0.7

    # A tag counts as showing its area ("first <area>", coverage, seats) only at
    # probability >= ``area_confidence``; an unsure photo still ranks on quality.
    area_confidence: float = 0.6
    # Inside the head no area more than ``max_run`` times in a row while another
    # area still has a photo to show (None = no limit).
    max_run: int | None = 2

    # Near duplicates (idealo/imagededup practice): CNN embedding cosine >= 0.9,
    # or perceptual-hash Hamming distance <= 10 (imagededup's default
    # max_distance_threshold for hashing methods). Near duplicates form clusters;
    # every image of a cluster but its best moves after every non-duplicate.
    suppress_duplicates: bool = True
    duplicate_cosine: float = 0.9
    duplicate_hamming: int = 10

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], got {self.diversity}")
        if self.quality_scale <= 0:
            raise ValueError("quality_scale must be > 0")
        if not 0.0 <= self.area_similarity <= 1.0:
            raise ValueError("area_similarity must be in [0, 1]")
        if self.head_size < 0:
            raise ValueError("head_size must be >= 0")
        if self.max_per_area is not None and self.max_per_area < 1:
            raise ValueError("max_per_area must be >= 1 or None")
        if self.hero_tolerance < 0:
            raise ValueError("hero_tolerance must be >= 0")
        if not 0.0 <= self.hero_confidence <= 1.0 or not 0.0 <= self.area_confidence <= 1.0:
            raise ValueError("hero_confidence and area_confidence must be in [0, 1]")
        if self.max_run is not None and self.max_run < 1:
            raise ValueError("max_run must be >= 1 or None")
        if not 0.0 <= self.duplicate_hamming <= 64:
            raise ValueError("duplicate_hamming must be in [0, 64]")
