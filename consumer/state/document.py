"""The gallery document the website reads (docs/architecture.md, "The gallery document").

One way to build it: ``hotel.HotelState.render``. The functions here are that
path for callers holding records (tools, tests): the records as they read back
from Redis, ranked with the editors' pins and hidden images applied and a
reason per position (``ranking.rank_gallery`` semantics).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from galleryrank.ranking.types import RankingConfig

from .hotel import HotelState
from .records import ImageState

if TYPE_CHECKING:
    from .overrides import HotelOverrides


def ranking_config(strategy: str = "default", diversity: float | None = None) -> RankingConfig:
    """A RankingConfig from the service settings; refuses unknown strategies at start-up."""
    from galleryrank.ranking import get_strategy

    get_strategy(strategy)  # KeyError now, not at the first event
    return (
        RankingConfig(strategy=strategy) if diversity is None else RankingConfig(strategy=strategy, diversity=diversity)
    )


def explain_records(
    records: Iterable[ImageState], config: RankingConfig | None = None, overrides: HotelOverrides | None = None
) -> tuple[list[ImageState], list[str], list[str]]:
    """(shown images in display order, a reason per position, pinned ids not shown)."""
    records = list(records)
    state = HotelState.from_records("", records, config or RankingConfig(), overrides)
    ids, reasons, missing = state.ranked()
    by_id = {r.image_id: r for r in records}
    return [by_id[i] for i in ids], reasons, missing


def order_records(records: Iterable[ImageState], config: RankingConfig | None = None) -> list[ImageState]:
    """Live (not deleted) images in display order (no overrides)."""
    return explain_records(records, config)[0]


def build_document(
    hotel_id: str,
    records: Iterable[ImageState],
    config: RankingConfig | None = None,
    now: datetime | None = None,
    overrides: HotelOverrides | None = None,
) -> bytes:
    """The gallery JSON. Beyond the read contract's fields, additive: each image's
    ``reason`` for its position and the document's ``pinned_missing`` (pinned ids
    with no image shown: never uploaded, deleted or hidden). ``updated_at`` is
    ``now`` when given, else the time of the newest change the records show."""
    state = HotelState.from_records(hotel_id, list(records), config or RankingConfig(), overrides)
    return state.render(now)
