"""Orders without a diversity model: the baseline idealo shipped first, and
simple references to measure the real strategies against."""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, diversified, quality_order
from ..registry import register
from ..types import RankingConfig


@register("aesthetic")
def aesthetic(gallery: Gallery, config: RankingConfig) -> np.ndarray:
    """Pure aesthetic order (ties by image_id); no duplicate handling, no hero, no caps."""
    return np.arange(gallery.size)


# Aesthetic order plus the shared duplicate suppression, hero rule and caps.
register("aesthetic_dedup")(diversified(quality_order))


@register("interleave")
@diversified
def interleave(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    """Round robin over top areas: each round visits areas in order of their
    best remaining image and takes that image. A hero, if any, opens round 1."""
    round_areas = {int(gallery.top_area[row]) for row in state.selected}
    while state.is_open():
        took = False
        for row in np.flatnonzero(~state.blocked):
            if not state.is_open():
                return
            area = int(gallery.top_area[row])
            if area in round_areas or state.blocked[row]:
                continue
            round_areas.add(area)
            state.take(int(row))
            took = True
        if not took and not round_areas:
            return
        round_areas = set()
