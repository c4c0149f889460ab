"""Seats: every area once, then each area's share of the head follows its share of
the gallery (PM-2's parliament, Dang & Croft 2012, with coverage first).

Area a deserves w_a = (confident photos tagged a) x config area weight (default 1)
of the seats. Its Sainte-Lague quotient qt_a = w_a / (2 s_a + 1) (s_a = seats taken
so far) says how much it is owed; an area with no seat yet is owed e_a + qt_a, with
e_a = min(1, sum of confident P(a|d)) the evidence that the hotel has it, so every
area the gallery has is shown once before any gets a second seat (largest share
first) and one stray tag does not claim a first seat. An image is worth
P(a|d) qt_a / max_b qt_b for its own (confidently tagged) area a: ~1 when it is that
area's turn. Unsure tags take no seat and claim no area: they are worth the
least-owed area's continuation quotient (no first-seat bonus), so they rank on their
quality among the rest without taking a coverage turn.
score = (1 - lambda) * quality + lambda * worth.

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
    p_top = gallery.area_probs[np.arange(gallery.size), top].astype(np.float64) * sure
    # The first seat is owed as much as the evidence that the hotel has the area at
    # all, min(1, sum of confident P(a|d)): one stray tag does not win a first seat.
    first_seat = np.minimum(np.bincount(top, weights=p_top, minlength=len(gallery.areas)), 1.0).tolist()
    share = shares.tolist()
    present = [a for a, w in enumerate(share) if w > 0]
    taken = [0] * len(share)
    for row in state.selected:  # pins and the hero take their seats
        if sure[row]:
            taken[top[row]] += 1
    # score = relevance + weight * value[slot]: a confident row's slot is its area (weight
    # lam * P(a|d)); every unsure row shares one extra slot (weight lam) whose value is the
    # least-owed area's continuation quotient, without the first-seat bonus: an unsure tag
    # ranks on its quality among the rest, never takes a coverage turn, nor falls behind
    # every confident photo.
    n_areas = len(share)
    slot = np.where(sure, top, n_areas)
    weight = np.where(sure, lam * p_top, lam)
    # Area-level quantities are a handful of floats: plain Python is cheaper than numpy here.
    while state.is_open():
        continuation = [w / (2.0 * t + 1.0) for w, t in zip(share, taken)]
        quotient = [c + (f if t == 0 else 0.0) for c, f, t in zip(continuation, first_seat, taken)]
        best = max(quotient, default=0.0)
        if best > 0:
            floor = min(continuation[a] for a in present) if present else 0.0
            value = np.array([*quotient, floor]) / best
            score = relevance + weight * value[slot]
        else:
            score = relevance.copy()
        score[state.closed()] = -np.inf
        row = int(np.argmax(score))
        state.take(row)
        if sure[row]:
            taken[top[row]] += 1
