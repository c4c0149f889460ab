"""Build the gallery document the website reads (design.md, "Redis (output)").

Pure: records in, JSON bytes out. The display order comes from `ranking.rank`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import orjson

from galleryrank.ranking import rank
from galleryrank.ranking.types import Candidate, RankingConfig

from .records import ImageState


def _candidates(records: list[ImageState]) -> tuple[list[Candidate], list[str]]:
    # Columns in a canonical order (sorted area names), so the ranking does not
    # depend on which model's area list the images came from.
    areas = sorted({a for r in records for a in (r.area_probs or {"other": 1.0})})
    cands = []
    for r in records:
        probs = r.area_probs or {"other": 1.0}
        vec = np.array([probs.get(a, 0.0) for a in areas], dtype=np.float32)
        total = float(vec.sum())
        vec = vec / total if total > 0 else np.full(len(areas), 1.0 / len(areas), np.float32)
        cands.append(Candidate(r.image_id, float(r.aesthetic), vec, r.embedding, r.phash))
    return cands, areas


def _model_version(records: list[ImageState]) -> str:
    counts = Counter(r.model_version for r in records)
    if not counts:
        return ""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def ranking_config(strategy: str = "default", diversity: float | None = None) -> RankingConfig:
    """A RankingConfig from the service settings; refuses unknown strategies at start-up."""
    from galleryrank.ranking import get_strategy

    get_strategy(strategy)  # KeyError now, not at the first event
    return (
        RankingConfig(strategy=strategy) if diversity is None else RankingConfig(strategy=strategy, diversity=diversity)
    )


def order_records(records: Iterable[ImageState], config: RankingConfig | None = None) -> list[ImageState]:
    """Live (not deleted) images in display order."""
    live = sorted((r for r in records if not r.deleted), key=lambda r: r.image_id)
    if not live:
        return []
    cands, areas = _candidates(live)
    return [live[i] for i in rank(cands, areas, config)]


def build_document(
    hotel_id: str,
    records: Iterable[ImageState],
    config: RankingConfig | None = None,
    now: datetime | None = None,
) -> bytes:
    ordered = order_records(records, config)
    doc = {
        "hotel_id": hotel_id,
        "model_version": _model_version(ordered),
        "updated_at": (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "images": [
            {
                "image_id": r.image_id,
                "url": r.url,
                "area": r.area,
                "area_confidence": round(r.area_confidence, 3),
                "aesthetic": round(r.aesthetic, 3),
            }
            for r in ordered
        ],
    }
    return orjson.dumps(doc)
