"""Hotel state in Redis: fenced, atomic, one round trip per micro-batch.

For a batch of image changes the store
1. reads every touched hotel's image hash and version counter (one pipeline),
2. merges the changes in Python, dropping any change whose (partition, offset)
   is not newer than what the image already holds (replays are no-ops),
3. re-ranks each changed hotel and writes its image fields, gallery document
   and version in ONE Lua script per hotel, all hotels in one pipeline.

The script refuses the write if the hotel's version moved since step 1
(another consumer wrote it during a rebalance); those hotels are re-read and
merged again. Readers therefore only ever see a whole gallery document.
All keys of one script share the `{hotel_id}` hash tag, so this works on Redis
Cluster too (docs/redis-cluster.md; tests/integration/test_redis_cluster.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

from galleryrank.ranking.types import RankingConfig

from . import hotel_index, keys
from .document import build_document
from .records import ImageState, decode_record, encode_record, normalise_scores

log = logging.getLogger(__name__)

# KEYS: images hash, gallery, version.  ARGV: expected version ("" = none yet),
# gallery JSON, then field/value pairs for the image hash.
_APPLY_LUA = """
local current = redis.call('GET', KEYS[3]) or ''
if current ~= ARGV[1] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('INCR', KEYS[3])
return 1
"""

# A conflict needs two writers on one hotel (only during a rebalance); three
# rounds are plenty, more would hide a bug.
_MAX_CONFLICT_ROUNDS = 5


@dataclass
class ApplyResult:
    applied: int = 0
    stale: int = 0
    hotels_written: int = 0


class GalleryStore:
    def __init__(self, redis: aioredis.Redis, ranking: RankingConfig | None = None):
        self.redis = redis
        self.ranking = ranking or RankingConfig()
        self._apply = redis.register_script(_APPLY_LUA)

    async def active_namespace(self) -> str:
        value = await self.redis.get(keys.ACTIVE_KEY)
        return value.decode() if value else keys.DEFAULT_NAMESPACE

    async def _read(self, namespace: str, hotel_ids: list[str]) -> dict[str, tuple[bytes, dict[str, ImageState]]]:
        pipe = self.redis.pipeline(transaction=False)
        for hid in hotel_ids:
            pipe.hgetall(keys.images_key(namespace, hid))
            pipe.get(keys.version_key(namespace, hid))
        raw = await pipe.execute()
        out = {}
        for i, hid in enumerate(hotel_ids):
            fields, version = raw[2 * i], raw[2 * i + 1]
            records = {k.decode(): decode_record(k.decode(), v) for k, v in fields.items()}
            out[hid] = (version or b"", records)
        return out

    async def apply(self, namespace: str, changes: Iterable[tuple[str, ImageState]]) -> ApplyResult:
        """Apply (hotel_id, record) changes; deleted records are tombstones."""
        by_hotel: dict[str, list[ImageState]] = defaultdict(list)
        for hotel_id, rec in changes:
            by_hotel[hotel_id].append(normalise_scores(rec))
        result = ApplyResult()
        pending = sorted(by_hotel)
        for _ in range(_MAX_CONFLICT_ROUNDS):
            if not pending:
                break
            state = await self._read(namespace, pending)
            pipe = self.redis.pipeline(transaction=False)
            attempted: list[tuple[str, int, int]] = []
            for hid in pending:
                version, current = state[hid]
                applied, stale = 0, 0
                changed: dict[str, ImageState] = {}
                for rec in sorted(by_hotel[hid], key=lambda r: (r.fence.partition, r.fence.offset)):
                    prev = changed.get(rec.image_id) or current.get(rec.image_id)
                    if rec.fence.is_newer_than(prev.fence if prev else None):
                        changed[rec.image_id] = rec
                        applied += 1
                    else:
                        stale += 1
                if not changed:
                    result.stale += stale
                    continue
                merged = {**current, **changed}
                # Ranking a big gallery is ~15 ms of numpy: off the event loop,
                # so Kafka heartbeats and downloads keep flowing.
                doc = await asyncio.to_thread(build_document, hid, list(merged.values()), self.ranking)
                args: list[bytes | str] = [version, doc]
                for image_id, rec in changed.items():
                    args += [image_id, encode_record(rec)]
                # EVAL, not EVALSHA: redis-py's cluster pipeline refuses EVALSHA, and
                # EVAL needs no SCRIPT EXISTS/LOAD round trip nor NOSCRIPT handling
                # after a failover (Redis caches the compiled script by its SHA).
                hotel_keys = [
                    keys.images_key(namespace, hid),
                    keys.gallery_key(namespace, hid),
                    keys.version_key(namespace, hid),
                ]
                pipe.eval(_APPLY_LUA, len(hotel_keys), *hotel_keys, *args)
                attempted.append((hid, applied, stale))
            # The index SET is in another slot (on a cluster, maybe another master),
            # so it cannot join the hotel's script. Stale hotels are re-added too: a
            # redo after a write whose SADD was lost (that master down) heals the index.
            hotel_index.add(pipe, namespace, pending)  # sorted set: the read API searches it by prefix
            replies = await pipe.execute()
            pending = []
            for (hid, applied, stale), ok in zip(attempted, replies):  # the SADD reply is last
                if ok == 1:
                    result.applied += applied
                    result.stale += stale
                    result.hotels_written += 1
                else:
                    log.info("hotel %s changed under us (concurrent writer); re-reading", hid)
                    pending.append(hid)
        if pending:
            raise RuntimeError(f"gave up after {_MAX_CONFLICT_ROUNDS} conflicting writes on hotels {pending[:5]}")
        return result

    async def hotel_records(self, namespace: str, hotel_id: str) -> dict[str, ImageState]:
        return (await self._read(namespace, [hotel_id]))[hotel_id][1]

    async def rerank(self, namespace: str, hotel_ids: Iterable[str]) -> int:
        """Rebuild gallery documents from stored scores (no download, no model)."""
        count = 0
        for hid in hotel_ids:
            for _ in range(_MAX_CONFLICT_ROUNDS):
                version, records = (await self._read(namespace, [hid]))[hid]
                doc = build_document(hid, records.values(), self.ranking)
                ok = await self._apply(
                    keys=[
                        keys.images_key(namespace, hid),
                        keys.gallery_key(namespace, hid),
                        keys.version_key(namespace, hid),
                    ],
                    args=[version, doc],
                )
                if ok == 1:
                    count += 1
                    break
        return count

    async def hotel_ids(self, namespace: str) -> list[str]:
        return await hotel_index.members(self.redis, namespace)
