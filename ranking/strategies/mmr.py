"""Maximal Marginal Relevance (Carbonell & Goldstein 1998).

next = argmax (1 - lambda) * quality(d) - lambda * max_{s in shown} sim(d, s)
with lambda = config.diversity, quality in quality_scale points below the best
image and sim from ranking.pipeline.similarity_features.
"""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, diversified, similarity_features
from ..registry import register
from ..types import RankingConfig


@register("mmr")
@diversified
def mmr(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    lam = config.diversity
    features = similarity_features(gallery, config)
    relevance = (1.0 - lam) * gallery.quality(config.quality_scale)
    max_sim = np.zeros(gallery.size)
    for row in state.selected:  # the hero, if any
        np.maximum(max_sim, features @ features[row], out=max_sim)
    while state.is_open():
        score = relevance - lam * max_sim
        score[state.closed()] = -np.inf
        row = int(np.argmax(score))
        state.take(row)
        np.maximum(max_sim, features @ features[row], out=max_sim)
