"""Skip the download of an upsert whose event_id the image already applied.

The per-image fence (state/records.py, rule 1) refuses a re-delivered event_id anyway, but
only after the scorer downloaded, decoded and scored the photo. `galleryrank publish` derives
event_ids from the catalogue rows, so re-publishing a catalogue of millions re-delivers millions
of known events. The answer only ever saves work: on any doubt (the record unreadable, Redis
unavailable) the event takes the normal path and the fence decides.

Cost: a hotel in the writer's cache is answered from memory. The others are asked in one
round trip per poll batch, not one per event: the records of a getmany start in the same
event-loop turn, so their lookups are gathered and sent as one pipeline (one HMGET per hotel)
on one pooled connection. One HGET per record cost ~0.3 CPU-ms per event (bench.software_ceiling
--quick), most of it opening pool connections for the hundreds of concurrent records.
"""

from __future__ import annotations

import asyncio
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


# (namespace, hotel_id) -> image_id -> the waiting records' futures
_Batch = dict[tuple[str, str], dict[str, list["asyncio.Future[Applied | None]"]]]


class KnownEvents:
    def __init__(self, redis: RedisClient, cache: _Cache | None = None):
        self.redis = redis
        self.cache = cache
        self.skipped = 0  # downloads saved (tests, the run summary's `stale`)
        self.round_trips = 0  # Redis round trips asked (tests, benchmarks)
        self._batch: _Batch | None = None  # lookups gathered in this loop turn
        self._flushes: set[asyncio.Task[None]] = set()  # referenced until done

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
        if self._batch is None:  # the first lookup of this turn: send the batch once the turn's records joined
            self._batch = {}
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        future: asyncio.Future[Applied | None] = asyncio.get_running_loop().create_future()
        self._batch.setdefault((namespace, event.hotel_id), {}).setdefault(event.image_id, []).append(future)
        return await future

    async def _flush(self) -> None:
        batch, self._batch = self._batch or {}, None
        wanted = [(hotel, list(images)) for hotel, images in batch.items()]
        answers: list[list[bytes | None]] = []
        try:
            pipe = self.redis.pipeline(transaction=False)
            for (namespace, hotel_id), image_ids in wanted:
                pipe.hmget(keys.images_key(namespace, hotel_id), image_ids)
            answers = await pipe.execute()
            self.round_trips += 1
        except Exception as exc:  # only an optimisation: the fence still decides after the download
            log.debug("re-delivery check of %d hotels skipped: %s", len(wanted), exc)
        for n, ((hotel, image_ids), images) in enumerate(zip(wanted, batch.values(), strict=True)):
            raws = answers[n] if n < len(answers) else [None] * len(image_ids)
            for image_id, raw in zip(image_ids, raws, strict=True):
                applied = _decode(hotel[1], image_id, raw)
                for future in images[image_id]:
                    if not future.done():  # a cancelled record no longer waits
                        future.set_result(applied)


def _decode(hotel_id: str, image_id: str, raw: bytes | None) -> Applied | None:
    if raw is None:
        return None
    try:
        return decode_stored(image_id, raw)[0].applied
    except Exception as exc:  # an unreadable record: the normal path, where the fence decides
        log.debug("re-delivery check of %s/%s skipped: %s", hotel_id, image_id, exc)
        return None
