"""Greedy MAP inference for a DPP (Chen, Zhang & Zhou, NeurIPS 2018).

Kernel L = diag(q) S diag(q): S from ranking.pipeline.similarity_features (a
Gram matrix, so PSD), q = exp(alpha * quality) with alpha = theta / (2 (1 - theta))
as in the paper, theta = 1 - config.diversity the weight of quality. Each step
picks argmax of the remaining Schur complement d_i^2 and updates it with one
row of the incremental Cholesky factor: O(N * D) per pick, L never built.
(Reference implementation: laming-chen/fast-map-dpp.)
"""

from __future__ import annotations

import numpy as np

from ..gallery import Gallery
from ..pipeline import HeadState, diversified, similarity_features
from ..registry import register
from ..types import RankingConfig

_EPS = 1e-10  # below this the kernel has no independent direction left


@register("dpp")
@diversified
def dpp(gallery: Gallery, config: RankingConfig, state: HeadState) -> None:
    theta = 1.0 - config.diversity
    alpha = theta / (2.0 * (1.0 - theta)) if theta < 1.0 else np.inf
    features = similarity_features(gallery, config)
    q = np.exp(alpha * gallery.quality(config.quality_scale))
    di2 = q * q  # diag(L): S_ii = 1
    factors = np.zeros((state.size, gallery.size))
    picks = 0

    def add(row: int) -> None:
        nonlocal picks, di2
        d = np.sqrt(di2[row])
        if d <= np.sqrt(_EPS):  # a hero that repeats nothing new: no update
            return
        l_row = q[row] * q * (features @ features[row])
        e = (l_row - factors[:picks, row] @ factors[:picks]) / d
        factors[picks] = e
        picks += 1
        di2 = di2 - e * e

    for row in list(state.selected):  # the hero, if any
        add(row)
    while state.is_open():
        gains = np.where(state.closed(), -np.inf, di2)
        row = int(np.argmax(gains))
        if gains[row] < _EPS:
            return  # nothing independent left: the tail follows in aesthetic order
        state.take(row)
        add(row)
