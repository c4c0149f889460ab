"""Pure gallery ordering: beautiful first, every area shown, no near duplicates.

No I/O here: the consumer passes scored candidates and gets back the display
order. ``rank`` is deterministic (ties broken by image_id), so a replay of the
same state gives a byte-identical gallery.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import strategies as _strategies  # noqa: F401  (registers strategies)
from .editorial import REASONS, RankedGallery, rank_gallery
from .gallery import Gallery, build_gallery
from .registry import DEFAULT_STRATEGY, STRATEGIES, StrategyFn, get_strategy, register
from .types import Candidate, RankingConfig

__all__ = [
    "Candidate",
    "DEFAULT_STRATEGY",
    "Gallery",
    "REASONS",
    "RankedGallery",
    "RankingConfig",
    "STRATEGIES",
    "StrategyFn",
    "build_gallery",
    "get_strategy",
    "rank",
    "rank_gallery",
    "register",
]


def rank(candidates: Sequence[Candidate], areas: Sequence[str], config: RankingConfig | None = None) -> list[int]:
    """Display order as indices into ``candidates`` (a permutation of range(len(candidates)))."""
    config = config or RankingConfig()
    strategy = get_strategy(config.strategy)
    gallery = build_gallery(candidates, areas)
    rows = strategy(gallery, config)
    return gallery.source_index[rows].tolist()
