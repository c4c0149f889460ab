"""Hotel state: owned in memory by the partition's owner, durable in Redis.

The store keeps the decoded state of the hotels it writes (``hotel.HotelState``)
in an LRU bounded by images (setting ``hotel_cache_images``), loaded lazily
from Redis on first touch (one pipeline for every missing hotel of a batch)
and dropped when their partitions are revoked (``forget``). Redis stays the
durable store and the website's read path; the cache can be lost at any time
without changing any result.

For a batch of changes the store
1. takes each touched hotel from the cache, or loads it (HGETALL of its image
   hash, its overrides, version counter and document);
2. decides every change against the hotel's fences (``records.Applied``) and
   applies the newer ones in memory, in (topic, partition, offset) order;
3. re-ranks each changed hotel once and writes only what changed: the new or
   changed image records, tombstones, overrides, and the gallery document if
   its bytes changed, plus the version, in ONE Lua script per hotel (all
   hotels in one pipeline). It never re-reads a hotel it holds.

The script is a compare-and-set on the hotel's version counter: when another
writer (a consumer that held the partition during a rebalance, ``galleryrank
rerank``, a foreign process) moved it, the script refuses, the cached copy is
dropped and the hotel is reloaded and decided again. A write whose outcome is
unknown (Redis error) also drops the hotels it touched. Readers therefore only
ever see a whole gallery document. All keys of one script share the
``{hotel_id}`` hash tag, so this works on Redis Cluster too
(docs/redis-cluster.md; tests/integration/test_redis_cluster.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from galleryrank.ranking.types import RankingConfig

from .. import metrics
from ..failures import is_environment
from ..interfaces import RedisClient, RedisPipeline
from . import hotel_index, keys, namespace
from .hotel import HotelState
from .overrides import OverrideChange, encode_overrides
from .records import ImageChange, ImageRecord, decode_record

log = logging.getLogger(__name__)

Change = ImageChange | OverrideChange

# KEYS: images hash, gallery, version, overrides.  ARGV: expected version ("" =
# none yet), gallery JSON ("" = unchanged), overrides JSON ("" = unchanged), then
# field/value pairs for the image hash. Returns the new version, 0 on a conflict.
_APPLY_LUA = """
local current = redis.call('GET', KEYS[3]) or ''
if current ~= ARGV[1] then return 0 end
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[2] ~= '' then redis.call('SET', KEYS[2], ARGV[2]) end
if ARGV[3] ~= '' then redis.call('SET', KEYS[4], ARGV[3]) end
return redis.call('INCR', KEYS[3])
"""

# A conflict needs two writers on one hotel (only during a rebalance); a few
# rounds are plenty, more would hide a bug.
_MAX_CONFLICT_ROUNDS = 5
DEFAULT_CACHE_IMAGES = 200_000

_blas_pinned = False


def limit_blas_threads() -> None:
    """One BLAS thread: ranking is small numpy work per hotel, and idle OpenBLAS helper
    threads busy-wait after every call (30 % of the writer's CPU measured in issue 12)."""
    global _blas_pinned
    if _blas_pinned:
        return
    _blas_pinned = True
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@dataclass
class ApplyResult:
    applied: int = 0
    stale: int = 0
    hotels_written: int = 0
    documents_written: int = 0
    loads: int = 0  # hotels read from Redis (first touch, after eviction, or after a conflict)
    conflicts: int = 0  # scripts refused because another writer moved the hotel
    # hotel -> why its changes were not applied (a bug while loading, deciding, ranking or
    # rendering it, or an error reply to its script that is not "not now"). Only that
    # hotel is affected: every other hotel of the call is written (docs/architecture.md).
    failed: dict[str, BaseException] = field(default_factory=dict, compare=False)
    # id(change) -> the event's fault found while deciding it (e.g. too_many_unknown_overrides):
    # that change is dead-lettered, the rest of its hotel is written.
    rejected: dict[int, BaseException] = field(default_factory=dict, compare=False)

    def add(self, other: ApplyResult) -> None:
        for name in self.__dataclass_fields__:
            if name not in ("failed", "rejected"):
                setattr(self, name, getattr(self, name) + getattr(other, name))


class HotelCache:
    """LRU of HotelState by (namespace, hotel_id), bounded by the images they hold."""

    def __init__(self, max_images: int = DEFAULT_CACHE_IMAGES):
        self.max_images = max_images
        self._states: OrderedDict[tuple[str, str], HotelState] = OrderedDict()
        self._weights: dict[tuple[str, str], int] = {}
        self.images = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, key: tuple[str, str]) -> HotelState | None:
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, key: tuple[str, str], state: HotelState, keep: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        self.drop(key)
        self._states[key] = state
        self._weights[key] = state.weight
        self.images += state.weight
        self.evict(keep)

    def reweigh(self, key: tuple[str, str]) -> None:
        state = self._states.get(key)
        if state is not None:
            self.images += state.weight - self._weights[key]
            self._weights[key] = state.weight

    def evict(self, keep: AbstractSet[tuple[str, str]] = frozenset()) -> None:
        for key in list(self._states):
            if self.images <= self.max_images:
                break
            if key not in keep:
                self.drop(key)
                metrics.HOTEL_CACHE.labels(event="evicted").inc()

    def drop(self, key: tuple[str, str]) -> None:
        if self._states.pop(key, None) is not None:
            self.images -= self._weights.pop(key)

    def drop_sources(self, sources: set[tuple[str, int]]) -> int:
        gone = [key for key, state in self._states.items() if state.sources & sources]
        for key in gone:
            self.drop(key)
        return len(gone)

    def clear(self) -> None:
        self._states.clear()
        self._weights.clear()
        self.images = 0


class GalleryStore:
    def __init__(
        self, redis: RedisClient, ranking: RankingConfig | None = None, cache_images: int = DEFAULT_CACHE_IMAGES
    ):
        self.redis = redis
        self.ranking = ranking or RankingConfig()
        self.cache = HotelCache(cache_images)
        # redis-py types register_script's self as the standalone client; RedisCluster has it too.
        self._apply = redis.register_script(_APPLY_LUA)  # type: ignore[misc]
        limit_blas_threads()

    async def active_namespace(self) -> str:
        return await namespace.active_namespace(self.redis)

    # --- the cache ---------------------------------------------------------------------------
    def forget(self, partitions: Iterable[tuple[str, int]] | None = None) -> int:
        """Drop cached hotels whose events came from these (topic, partition)s (all: None).
        The scorer calls it when partitions are revoked: their next owner writes them."""
        if partitions is None:
            count = len(self.cache)
            self.cache.clear()
            return count
        return self.cache.drop_sources(set(partitions))

    async def _load(self, namespace: str, hotel_ids: list[str]) -> dict[str, HotelState | Exception]:
        """Each hotel's state, or why it could not be read (that hotel fails alone)."""
        pipe = self.redis.pipeline(transaction=False)
        for hid in hotel_ids:
            pipe.hgetall(keys.images_key(namespace, hid))
            pipe.get(keys.overrides_key(namespace, hid))
            pipe.get(keys.version_key(namespace, hid))
            pipe.get(keys.gallery_key(namespace, hid))
        raw = await pipe.execute()

        def decode() -> dict[str, HotelState | Exception]:
            out: dict[str, HotelState | Exception] = {}
            for i, hid in enumerate(hotel_ids):
                try:
                    out[hid] = HotelState.from_redis(hid, self.ranking, *raw[4 * i : 4 * i + 4])
                except Exception as exc:  # one unreadable hotel fails alone
                    log.exception("hotel %s: its stored state could not be loaded", hid)
                    out[hid] = exc
            return out

        # Decoding a big hotel is milliseconds of Python: off the event loop.
        return await asyncio.to_thread(decode)

    # --- writes ------------------------------------------------------------------------------
    async def apply(self, namespace: str, changes: Iterable[tuple[str, Change]]) -> ApplyResult:
        """Apply (hotel_id, change) pairs: image records (deleted ones are tombstones) and
        editors' overrides, each fenced on its own (records.Applied)."""
        by_hotel: dict[str, list[Change]] = defaultdict(list)
        for hotel_id, change in changes:
            by_hotel[hotel_id].append(change)
        for batch in by_hotel.values():  # offset order within each (topic, partition)
            batch.sort(key=lambda c: (c.fence.topic, c.fence.partition, c.fence.offset))
        result = ApplyResult()
        pending = sorted(by_hotel)
        keep = {(namespace, hid) for hid in pending}
        for _ in range(_MAX_CONFLICT_ROUNDS):
            if not pending:
                break
            states: dict[str, HotelState] = {}
            missing = []
            for hid in pending:
                cached = self.cache.get((namespace, hid))
                if cached is None:
                    missing.append(hid)
                else:
                    states[hid] = cached
            metrics.HOTEL_CACHE.labels(event="hit").inc(len(pending) - len(missing))
            if missing:
                metrics.HOTEL_CACHE.labels(event="miss").inc(len(missing))
                result.loads += len(missing)
                loaded = await self._load(namespace, missing)
                for hid, state in loaded.items():
                    if isinstance(state, Exception):
                        result.failed[hid] = state
                        continue
                    states[hid] = state
                    self.cache.put((namespace, hid), state, keep)
                pending = [hid for hid in pending if hid not in result.failed]
            pending = await self._write(namespace, pending, states, by_hotel, result)
        for hid in pending:  # still conflicting: those hotels fail (the writer isolates and retries them)
            result.failed[hid] = RuntimeError(f"gave up after {_MAX_CONFLICT_ROUNDS} conflicting writes on hotel {hid}")
        return result

    async def _write(
        self,
        namespace: str,
        hotel_ids: list[str],
        states: dict[str, HotelState],
        by_hotel: dict[str, list[Change]],
        result: ApplyResult,
    ) -> list[str]:
        """Decide, re-rank and write; returns the hotels to do again (conflicts)."""

        def decide_hotel(hid: str) -> tuple[str, list[bytes | str], int, int, bytes | None]:
            state = states[hid]
            fields: dict[str, bytes] = {}
            overrides_changed = False
            applied = stale = 0
            for change in by_hotel[hid]:
                verdict = state.apply(change)
                if verdict.rejected is not None:
                    rejected[id(change)] = verdict.rejected
                    continue
                if verdict.applied:
                    applied += 1
                else:
                    stale += 1
                if verdict.record is not None and isinstance(change, ImageChange):
                    fields[change.image_id] = verdict.record
                overrides_changed |= verdict.overrides
            if not fields and not overrides_changed:
                return (hid, [], 0, stale, None)
            doc = state.render() if applied else state.document or state.render()
            args: list[bytes | str] = [
                state.version,
                doc if doc != state.document else "",
                encode_overrides(state.overrides) if overrides_changed else "",
            ]
            for image_id, raw in fields.items():
                args += [image_id, raw]
            return (hid, args, applied, stale, doc)

        failed: dict[str, Exception] = {}
        rejected: dict[int, BaseException] = {}

        def decide() -> list[tuple[str, list[bytes | str], int, int, bytes | None]]:
            planned = []
            for hid in hotel_ids:
                try:
                    planned.append(decide_hotel(hid))
                except Exception as exc:  # a bug on this hotel's changes: this hotel only
                    log.exception("hotel %s: deciding or rendering its changes failed", hid)
                    failed[hid] = exc
            return planned

        # Deciding and ranking are CPU work: one hop off the event loop for the whole batch,
        # so Kafka heartbeats and downloads keep flowing.
        try:
            planned = await asyncio.to_thread(decide)
        except BaseException:
            for hid in hotel_ids:  # changed in memory but not written: never reuse them
                self.cache.drop((namespace, hid))
            raise
        for hid, exc in failed.items():
            self.cache.drop((namespace, hid))  # changed in memory, not written: never reuse it
            result.failed[hid] = exc
        result.rejected.update(rejected)
        pipe = self.redis.pipeline(transaction=False)
        scripted: list[tuple[str, int, int, bytes | None]] = []
        for hid, args, applied, stale, doc in planned:
            if not args:
                result.stale += stale
                continue
            # EVAL, not EVALSHA: redis-py's cluster pipeline refuses EVALSHA, and
            # EVAL needs no SCRIPT EXISTS/LOAD round trip nor NOSCRIPT handling
            # after a failover (Redis caches the compiled script by its SHA).
            hotel_keys = [
                keys.images_key(namespace, hid),
                keys.gallery_key(namespace, hid),
                keys.version_key(namespace, hid),
                keys.overrides_key(namespace, hid),
            ]
            pipe.eval(_APPLY_LUA, len(hotel_keys), *hotel_keys, *args)
            scripted.append((hid, applied, stale, doc if args[1] else b""))
        # The index is in another slot (on a cluster, maybe another master), so it
        # cannot join the hotel's script. Stale hotels are re-added too: a redo
        # after a write whose index update was lost heals the index.
        self._index(pipe, namespace, [hid for hid in hotel_ids if hid not in result.failed])
        try:
            # Error replies come back per command: one hotel's refused script fails that hotel.
            replies = await pipe.execute(raise_on_error=False)
            # "Not now" (OOM, READONLY, ...) on any command: the whole call is the environment's.
            refused = next((r for r in replies if isinstance(r, Exception) and is_environment(r)), None)
            if refused is not None:
                raise refused
        except BaseException:
            for hid, *_ in scripted:  # written or not: unknown, so reload them next time
                self.cache.drop((namespace, hid))
            raise
        retry = []
        for (hid, applied, stale, doc), reply in zip(scripted, replies):  # the index reply is last
            state = states[hid]
            if isinstance(reply, Exception):
                log.error("hotel %s: its write was refused: %s", hid, reply)
                self.cache.drop((namespace, hid))
                result.failed[hid] = reply
            elif reply:
                state.version = str(int(reply)).encode()
                if doc:
                    state.document = doc
                    result.documents_written += 1
                result.applied += applied
                result.stale += stale
                result.hotels_written += 1
                self.cache.reweigh((namespace, hid))
            else:
                log.info("hotel %s changed under us (another writer); reloading it", hid)
                metrics.HOTEL_CACHE.labels(event="conflict").inc()
                result.conflicts += 1
                self.cache.drop((namespace, hid))
                retry.append(hid)
        return retry

    @staticmethod
    def _index(pipe: RedisPipeline, namespace: str, hotel_ids: list[str]) -> None:
        hotel_index.add(pipe, namespace, hotel_ids)  # sorted set: the read API searches it by prefix

    # --- reads and tools -------------------------------------------------------------------
    async def hotel_state(self, namespace: str, hotel_id: str) -> HotelState:
        """The hotel as Redis holds it now (not the cache)."""
        state = (await self._load(namespace, [hotel_id]))[hotel_id]
        if isinstance(state, Exception):
            raise state
        return state

    async def hotel_records(self, namespace: str, hotel_id: str) -> dict[str, ImageRecord]:
        key = keys.images_key(namespace, hotel_id)
        fields: dict[bytes, bytes] = await self.redis.hgetall(key)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        return {k.decode(): decode_record(k.decode(), v) for k, v in fields.items()}

    async def rerank(self, namespace: str, hotel_ids: Iterable[str]) -> int:
        """Rebuild gallery documents from stored state (no download, no model), e.g. after a
        ranking change; every hotel's document is written and its version bumped."""
        count = 0
        for hid in hotel_ids:
            for _ in range(_MAX_CONFLICT_ROUNDS):
                state = await self.hotel_state(namespace, hid)
                doc = await asyncio.to_thread(state.render)
                hotel_keys = [
                    keys.images_key(namespace, hid),
                    keys.gallery_key(namespace, hid),
                    keys.version_key(namespace, hid),
                    keys.overrides_key(namespace, hid),
                ]
                if await self._apply(keys=hotel_keys, args=[state.version, doc, ""]):
                    count += 1
                    break
            self.cache.drop((namespace, hid))
        return count

    async def hotel_ids(self, namespace: str) -> list[str]:
        return await hotel_index.members(self.redis, namespace)
