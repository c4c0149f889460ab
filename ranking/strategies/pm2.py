"""PM-2 (Dang & Croft 2012): proportional diversification over hotel areas.

Each position is a parliament seat; area a "deserves" w_a of the seats. The
Sainte-Lague quotient qt_a = w_a / (2 s_a + 1) (s_a = seats taken so far)
names the area whose turn it is, a*. An image's diversity value is
  PM2_FOCUS * qt_a* * P(a*|d) + (1 - PM2_FOCUS) * sum_{a != a*} qt_a * P(a|d),
divided by qt_a* so that "the image a* needs" is worth 1; it is mixed with
quality as (1 - lambda) * quality + lambda * diversity. The chosen image then
takes P(a|d) of a seat in every area a.
"""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, area_weights, coverage_probs, diversified
from ..registry import register
from ..types import RankingConfig

PM2_FOCUS = 0.5  # the paper's lambda between the area whose turn it is and the rest


@register("pm2")
@diversified
def pm2(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    lam = config.diversity
    probs = coverage_probs(gallery, config)  # unsure tags cover nothing
    relevance = (1.0 - lam) * gallery.quality(config.quality_scale)
    weights = area_weights(gallery, config)
    if not weights.any():
        weights = np.ones(len(gallery.areas))
    seats = np.zeros(len(gallery.areas))
    for row in state.selected:  # the hero, if any
        seats += probs[row]
    while state.is_open():
        quotient = weights / (2.0 * seats + 1.0)
        turn = int(np.argmax(quotient))
        mix = (1.0 - PM2_FOCUS) * quotient
        mix[turn] = PM2_FOCUS * quotient[turn]
        score = relevance + lam * (probs @ mix) / quotient[turn]
        score[state.closed()] = -np.inf
        row = int(np.argmax(score))
        state.take(row)
        seats += probs[row]
