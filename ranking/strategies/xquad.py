"""xQuAD (Santos, Macdonald & Ounis 2010) over hotel areas.

score(d) = (1 - lambda) * quality(d)
         + lambda * sum_a w_a * P(a|d) * prod_{s in shown} (1 - P(a|s))
with lambda = config.diversity, P(a|d) the tagger's area probabilities and
w_a = config area weight (0 for areas the gallery lacks). A new area is thus
worth lambda / (1 - lambda) quality units.
"""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, area_weights, coverage_probs, diversified
from ..registry import register
from ..types import RankingConfig


@register("xquad")
@diversified
def xquad(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    lam = config.diversity
    probs = coverage_probs(gallery, config)  # unsure tags cover nothing
    relevance = (1.0 - lam) * gallery.quality(config.quality_scale)
    weights = area_weights(gallery, config)
    not_covered = np.ones(len(gallery.areas))  # prod over shown of (1 - P(a|s))
    for row in state.selected:  # the hero, if any
        not_covered *= 1.0 - probs[row]
    while state.is_open():
        score = relevance + lam * (probs @ (weights * not_covered))
        score[state.closed()] = -np.inf
        row = int(np.argmax(score))
        state.take(row)
        not_covered *= 1.0 - probs[row]
