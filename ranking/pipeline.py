"""What every diversifying strategy shares.

0. rows an editor pinned (``gallery.pinned``) take the first positions, in
   their order, and count as shown for the rest (coverage, caps, duplicates);
1. near duplicates of a better image are set aside (they go last);
2. the hero rule seeds position 0 (not when something is pinned): the best
   photo confidently tagged with a hero area (``config.hero_areas``, tag
   probability >= ``hero_confidence``) within ``hero_tolerance`` of the best
   score; when there is none, the strategy picks position 0 itself;
3. the strategy's greedy selector fills the head (``config.head_size``
   positions), respecting per-area caps and the run limit (``max_run``: no
   area more than that many times in a row while another area still has a
   photo to show);
4. the remaining non-duplicates follow in aesthetic order, then the
   duplicates in aesthetic order.

Only the head needs careful (O(N) per position) work, so a ranking costs
O(N * head_size) plus the duplicate pass, not O(N^2) greedy steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .duplicates import near_duplicate_mask
from .gallery import Gallery
from .registry import StrategyFn
from .types import RankingConfig

_NO_CAP = np.iinfo(np.int64).max


class HeadState:
    """The head being built: chosen rows and which rows may still be chosen."""

    def __init__(self, gallery: Gallery, config: RankingConfig, excluded: np.ndarray) -> None:
        self.gallery = gallery
        self.blocked = excluded.copy()  # rows that may not enter the head (any more)
        self.selected: list[int] = []
        self.size = min(config.head_size + len(gallery.pinned), int((~excluded).sum()))
        self.caps = _area_caps(gallery.areas, config)
        self.area_counts = np.zeros(len(gallery.areas), dtype=np.int64)
        self.max_run = config.max_run
        # Open (unblocked) rows, in all and per area: the run limit's check is O(areas), not O(N).
        self._top = gallery.top_area.tolist()
        self._open = int((~excluded).sum())
        n_areas = len(gallery.areas)
        self._open_per_area = np.bincount(gallery.top_area[~excluded], minlength=n_areas) if n_areas else None
        self._area_rows: dict[int, np.ndarray] = {}

    def is_open(self) -> bool:
        return len(self.selected) < self.size and self._open > 0

    def _rows_of(self, area: int) -> np.ndarray:
        rows = self._area_rows.get(area)
        if rows is None:
            rows = self._area_rows[area] = self.gallery.top_area == area
        return rows

    def closed(self) -> np.ndarray:
        """Rows the next position may not take: ``blocked``, plus the area of the last
        ``max_run`` positions when they all show one area and another area is still open."""
        run = self.max_run
        if run is None or len(self.selected) < run or self._open_per_area is None:
            return self.blocked
        top = self._top
        area = top[self.selected[-1]]
        if any(top[row] != area for row in self.selected[-run:]):
            return self.blocked
        if self._open - int(self._open_per_area[area]) > 0:
            return self.blocked | self._rows_of(area)
        return self.blocked

    def take(self, row: int) -> None:
        row = int(row)
        self.selected.append(row)
        if not self.blocked[row]:
            self._open -= 1
            if self._open_per_area is not None:
                self._open_per_area[self._top[row]] -= 1
        self.blocked[row] = True
        if self._open_per_area is None:  # a gallery without areas
            return
        area = self._top[row]
        self.area_counts[area] += 1
        if self.area_counts[area] >= self.caps[area]:
            # Capped: the area's other images wait for the aesthetic-ordered tail.
            self.blocked |= self._rows_of(area)
            self._open -= int(self._open_per_area[area])
            self._open_per_area[area] = 0


Selector = Callable[[Gallery, RankingConfig, HeadState], None]


def diversified(select_head: Selector) -> StrategyFn:
    """Turn a head selector into a full strategy (duplicates, hero, caps, tail)."""

    def strategy(gallery: Gallery, config: RankingConfig) -> np.ndarray:
        if config.suppress_duplicates:
            dup = near_duplicate_mask(gallery, config.duplicate_cosine, config.duplicate_hamming)
        else:
            dup = np.zeros(gallery.size, dtype=bool)
        state = HeadState(gallery, config, dup)
        for row in gallery.pinned:  # never duplicates (duplicate_representatives)
            state.take(row)
        hero = None if gallery.pinned else pick_hero(gallery, config, dup)
        if hero is not None and state.is_open():
            state.take(hero)
        if state.is_open():
            if config.diversity > 0.0:
                select_head(gallery, config, state)
            else:
                quality_order(gallery, config, state)
        return assemble(gallery, state.selected, dup)

    strategy.__name__ = getattr(select_head, "__name__", "strategy")
    strategy.__doc__ = select_head.__doc__
    strategy.shared_pipeline = True  # type: ignore[attr-defined]  # duplicates, hero, caps: see ranking.editorial
    return strategy


def quality_order(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    """Fill the head with the best images allowed (canonical order is best first)."""
    while state.is_open():
        state.take(int(np.argmin(state.blocked)))  # first unblocked row


def confident(gallery: Gallery, floor: float) -> np.ndarray:
    """(N,) bool: the row's top-area tag has probability >= ``floor``."""
    if gallery.size == 0 or not gallery.areas:
        return np.zeros(gallery.size, dtype=bool)
    return gallery.area_probs[np.arange(gallery.size), gallery.top_area] >= floor


def coverage_probs(gallery: Gallery, config: RankingConfig) -> np.ndarray:
    """(N, C) P(a|d) for covering areas: zero rows for unsure tags (below
    ``area_confidence``), which rank on quality alone and cover nothing."""
    probs = gallery.area_probs.astype(np.float64)
    return probs * confident(gallery, config.area_confidence)[:, None]


def hero_columns(gallery: Gallery, config: RankingConfig) -> list[int]:
    return [gallery.areas.index(a) for a in config.hero_areas if a in gallery.areas]


def pick_hero(gallery: Gallery, config: RankingConfig, excluded: np.ndarray) -> int | None:
    """Best non-duplicate confidently tagged with a hero area, if within tolerance of the best."""
    if not config.hero_areas or gallery.size == 0:
        return None
    columns = hero_columns(gallery, config)
    if not columns:
        return None
    is_hero_area = np.zeros(len(gallery.areas), dtype=bool)
    is_hero_area[columns] = True  # a lookup, not np.isin (which sorts: ~0.1 ms per gallery)
    eligible = is_hero_area[gallery.top_area] & ~excluded & confident(gallery, config.hero_confidence)
    best = gallery.aesthetic[~excluded].max(initial=-np.inf)
    rows = np.flatnonzero(eligible & (gallery.aesthetic >= best - config.hero_tolerance))
    return int(rows[0]) if rows.size else None


def assemble(gallery: Gallery, head: list[int], duplicates: np.ndarray) -> np.ndarray:
    placed = np.zeros(gallery.size, dtype=bool)
    head_rows = np.asarray(head, dtype=np.int64)
    placed[head_rows] = True
    tail = np.flatnonzero(~placed & ~duplicates)
    copies = np.flatnonzero(~placed & duplicates)
    return np.concatenate([head_rows, tail, copies])


def _area_caps(areas: tuple[str, ...], config: RankingConfig) -> np.ndarray:
    default = _NO_CAP if config.max_per_area is None else config.max_per_area
    return np.array([config.area_caps.get(a, default) for a in areas], dtype=np.int64)


def area_weights(gallery: Gallery, config: RankingConfig) -> np.ndarray:
    """(C,) worth of covering each area: the config weight times the evidence
    that the gallery has the area at all, min(1, sum of P(a|d) over the images
    whose top area is a). A lone, unsure tag (a bathroom read as a kitchen at
    0.45) then does not claim a whole slot for an area the hotel may not have."""
    weights = np.array([config.area_weights.get(a, 1.0) for a in gallery.areas], dtype=np.float64)
    rows = np.arange(gallery.size)
    evidence = np.bincount(
        gallery.top_area, weights=gallery.area_probs[rows, gallery.top_area], minlength=len(gallery.areas)
    )
    return weights * np.minimum(evidence, 1.0)


def similarity_features(gallery: Gallery, config: RankingConfig) -> np.ndarray:
    """(N, D + C) unit rows whose dot products are the MMR/DPP similarity.

    A Gram matrix, so the DPP kernel built from it is positive semi-definite.
    """
    w = config.area_similarity
    areas = gallery.area_probs.astype(np.float64)
    areas /= np.maximum(np.linalg.norm(areas, axis=1, keepdims=True), 1e-12)
    has = gallery.has_embedding[:, None]
    embedding_part = np.where(has, np.sqrt(1.0 - w) * gallery.embeddings, 0.0)
    area_part = np.where(has, np.sqrt(w) * areas, areas)
    features = np.concatenate([embedding_part, area_part], axis=1)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return features
