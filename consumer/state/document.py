"""Build the gallery document the website reads (docs/architecture.md, "Redis (output)").

Pure: records in, JSON bytes out. The display order, with the editors' pins and hidden
images applied and a reason per position, comes from `ranking.rank_gallery`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import orjson

from galleryrank.ranking import rank, rank_gallery
from galleryrank.ranking.types import Candidate, RankingConfig

from .records import ImageState

if TYPE_CHECKING:
    from .overrides import HotelOverrides

log = logging.getLogger(__name__)


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


def explain_records(
    records: Iterable[ImageState], config: RankingConfig | None = None, overrides: HotelOverrides | None = None
) -> tuple[list[ImageState], list[str], list[str]]:
    """(shown images in display order, a reason per position, pinned ids not shown).

    Editors' overrides applied: hidden images are left out, pinned ones lead
    (ranking.rank_gallery)."""
    pinned = overrides.pinned if overrides is not None else ()
    hidden = overrides.hidden if overrides is not None else frozenset()
    live = sorted((r for r in records if not r.deleted), key=lambda r: r.image_id)
    if not live:
        return [], [], list(dict.fromkeys(pinned))
    cands, areas = _candidates(live)
    ranked = rank_gallery(cands, areas, config, pinned=pinned, hidden=hidden)
    return [live[i] for i in ranked.order], ranked.reasons, ranked.pinned_missing


def build_document(
    hotel_id: str,
    records: Iterable[ImageState],
    config: RankingConfig | None = None,
    now: datetime | None = None,
    overrides: HotelOverrides | None = None,
) -> bytes:
    """The gallery JSON. Beyond the read contract's fields, additive: each image's
    ``reason`` for its position and the document's ``pinned_missing`` (pinned ids
    with no image shown: never uploaded, deleted or hidden)."""
    ordered, reasons, missing = explain_records(records, config, overrides)
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
                "reason": reason,
            }
            for r, reason in zip(ordered, reasons)
        ],
        "pinned_missing": missing,
    }
    if missing:
        log.info("hotel %s: pinned images not shown (missing, deleted or hidden): %s", hotel_id, ", ".join(missing))
    return orjson.dumps(doc)
