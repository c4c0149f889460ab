"""Strategy registry: name -> function(Gallery, RankingConfig) -> row order."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .gallery import Gallery
from .types import RankingConfig

# A strategy returns a permutation of range(gallery.size) in display order,
# in the gallery's canonical row space.
StrategyFn = Callable[[Gallery, RankingConfig], np.ndarray]

STRATEGIES: dict[str, StrategyFn] = {}

# What RankingConfig(strategy="default") runs; chosen by bench/ranking_bench.py.
DEFAULT_STRATEGY = "seats"


def register(name: str) -> Callable[[StrategyFn], StrategyFn]:
    def wrap(fn: StrategyFn) -> StrategyFn:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} registered twice")
        STRATEGIES[name] = fn
        return fn

    return wrap


def get_strategy(name: str) -> StrategyFn:
    if name == "default":
        name = DEFAULT_STRATEGY
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown ranking strategy {name!r}; known: {sorted(STRATEGIES)}") from None
