"""Seats: every area once, then each area's share of the head follows its share of
the gallery (PM-2's parliament, Dang & Croft 2012, with coverage first).

Area a deserves w_a = (confident photos tagged a) x config area weight (default 1)
of the seats. Its Sainte-Lague quotient qt_a = w_a / (2 s_a + 1) (s_a = seats taken
so far) says how much it is owed; an area with no seat yet is owed 1 + w_a, so every
area the gallery has is shown once before any gets a second seat (largest share
first). An image is worth qt_a / max_b qt_b for its own (confidently tagged) area a,
in [0, 1]: 1 when it is that area's turn. Unsure tags are worth 0 and take no seat:
they rank on quality alone. score = (1 - lambda) * quality + lambda * worth.

Unlike xQuAD's prod(1 - P(a|s)), which is ~0 for every area once each has been
shown, the quotient never vanishes, so variety holds through the whole head; the
shared pipeline's run limit (``max_run``) is the hard floor under it.
"""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, confident, diversified
from ..registry import register
from ..types import RankingConfig


def seat_shares(gallery: Gallery, config: RankingConfig, sure: np.ndarray) -> np.ndarray:
    """(C,) seats each area deserves: its confident photos times its configured weight."""
    counts = np.bincount(gallery.top_area[sure], minlength=len(gallery.areas)).astype(np.float64)
    weights = np.array([config.area_weights.get(a, 1.0) for a in gallery.areas], dtype=np.float64)
    shares = counts * weights
    total = shares.sum()
    return shares / total if total > 0 else shares


@register("seats")
@diversified
def seats(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    lam = config.diversity
    relevance = (1.0 - lam) * gallery.quality(config.quality_scale)
    sure = confident(gallery, config.area_confidence)
    top = gallery.top_area
    shares = seat_shares(gallery, config, sure)
    owed_area = shares > 0
    taken = np.zeros(len(gallery.areas))
    for row in state.selected:  # pins and the hero take their seats
        if sure[row]:
            taken[top[row]] += 1
    rows_sure = sure.astype(np.float64)
    while state.is_open():
        quotient = shares / (2.0 * taken + 1.0) + (owed_area & (taken == 0))
        best = quotient.max()
        worth = rows_sure * (quotient[top] / best) if best > 0 else np.zeros(gallery.size)
        score = relevance + lam * worth
        score[state.closed()] = -np.inf
        row = int(np.argmax(score))
        state.take(row)
        if sure[row]:
            taken[top[row]] += 1
