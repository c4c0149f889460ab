"""Skip the download of an upsert whose event_id the image already applied.

The per-image fence (state/records.py, rule 1) refuses a re-delivered event_id anyway, but
only after the scorer downloaded, decoded and scored the photo. `galleryrank publish` derives
event_ids from the catalogue rows, so re-publishing a catalogue of millions re-delivers millions
of known events: asking first costs one HGET (or nothing, for a hotel in the writer's cache)
instead of a download and an inference. The answer only ever saves work: on any doubt (the
record unreadable, Redis unavailable) the event takes the normal path and the fence decides.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ..interfaces import RedisClient
from ..state import keys
from ..state.records import Applied, decode_stored
from .events import ImageUpserted

log = logging.getLogger(__name__)


class _HotelState(Protocol):
    applied: dict[str, Applied]


class _Cache(Protocol):
    def get(self, key: tuple[str, str]) -> _HotelState | None: ...


class KnownEvents:
    def __init__(self, redis: RedisClient, cache: _Cache | None = None):
        self.redis = redis
        self.cache = cache
        self.skipped = 0  # downloads saved (tests, the run summary's `stale`)

    async def applied(self, namespace: str, event: ImageUpserted) -> bool:
        """True when `event.event_id` is already applied to its image in `namespace`."""
        applied = await self._applied(namespace, event)
        known = applied is not None and applied.knows(event.event_id)
        self.skipped += known
        return known

    async def _applied(self, namespace: str, event: ImageUpserted) -> Applied | None:
        state = self.cache.get((namespace, event.hotel_id)) if self.cache is not None else None
        if state is not None:  # the cache holds every image of a cached hotel, as written
            return state.applied.get(event.image_id)
        try:
            raw = await self.redis.hget(keys.images_key(namespace, event.hotel_id), event.image_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
            if raw is None:
                return None
            return decode_stored(event.image_id, raw)[0].applied
        except Exception as exc:  # only an optimisation: the fence still decides after the download
            log.debug("re-delivery check of %s/%s skipped: %s", event.hotel_id, event.image_id, exc)
            return None
