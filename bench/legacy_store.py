"""Today's design, kept ONLY as the baseline of bench/state_bench.py (issue 12).

The hotel state path as it was at commit dccda32 (consumer/state/records.py,
document.py and store.py of that commit, in one file, imports adjusted): every
write re-reads the whole hotel (HGETALL), decodes every JSON record, re-ranks
it from scratch (O(N^2) near-duplicate pass) and rewrites the whole document.
Not used by the service; do not import it from galleryrank.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson
import redis.asyncio as aioredis

from galleryrank.consumer.state import keys
from galleryrank.ranking import rank
from galleryrank.ranking.types import Candidate, RankingConfig

log = logging.getLogger(__name__)

SCORE_DECIMALS = 3


# --- records.py @ dccda32 ---------------------------------------------------------------------
@dataclass(frozen=True)
class Fence:
    """Where the state of one image came from: (partition, offset) of the event."""

    partition: int
    offset: int

    def is_newer_than(self, other: Fence | None) -> bool:
        if other is None:
            return True
        # Offsets only order events of one partition. A hotel moves partitions
        # only when the topic's partition count changes; then the new event wins.
        if other.partition != self.partition:
            return True
        return self.offset > other.offset


@dataclass(frozen=True)
class ImageState:
    image_id: str
    fence: Fence
    event_id: str
    deleted: bool = False
    url: str = ""
    aesthetic: float = 0.0
    aesthetic_dist: tuple[float, ...] = ()
    area_probs: dict[str, float] | None = None
    embedding: np.ndarray | None = None  # float32, L2-normalised
    phash: int | None = None
    model_version: str = ""

    @property
    def area(self) -> str:
        probs = self.area_probs or {"other": 1.0}
        return max(sorted(probs), key=lambda a: probs[a])

    @property
    def area_confidence(self) -> float:
        probs = self.area_probs or {"other": 1.0}
        return probs[self.area]


def quantize_embedding(embedding: np.ndarray) -> str:
    q = np.clip(np.round(np.asarray(embedding, np.float32) * 127.0), -127, 127).astype(np.int8)
    return base64.b64encode(q.tobytes()).decode()


def dequantize_embedding(text: str) -> np.ndarray:
    q = np.frombuffer(base64.b64decode(text), dtype=np.int8).astype(np.float32) / 127.0
    norm = float(np.linalg.norm(q))
    return q / norm if norm > 0 else q


def encode_record(rec: ImageState) -> bytes:
    body: dict[str, object] = {"p": rec.fence.partition, "o": rec.fence.offset, "e": rec.event_id}
    if rec.deleted:
        body["deleted"] = True
        return orjson.dumps(body)
    body.update(
        url=rec.url,
        a=round(float(rec.aesthetic), SCORE_DECIMALS),
        d=[round(float(x), SCORE_DECIMALS) for x in rec.aesthetic_dist],
        ar={k: round(float(v), SCORE_DECIMALS) for k, v in sorted((rec.area_probs or {}).items())},
        m=rec.model_version,
    )
    if rec.embedding is not None:
        body["emb"] = quantize_embedding(rec.embedding)
    if rec.phash is not None:
        body["ph"] = f"{rec.phash:016x}"
    return orjson.dumps(body)


def decode_record(image_id: str, raw: bytes) -> ImageState:
    body = orjson.loads(raw)
    fence = Fence(int(body["p"]), int(body["o"]))
    if body.get("deleted"):
        return ImageState(image_id=image_id, fence=fence, event_id=body.get("e", ""), deleted=True)
    return ImageState(
        image_id=image_id,
        fence=fence,
        event_id=body.get("e", ""),
        url=body["url"],
        aesthetic=float(body["a"]),
        aesthetic_dist=tuple(body.get("d", ())),
        area_probs={k: float(v) for k, v in body.get("ar", {}).items()},
        embedding=dequantize_embedding(body["emb"]) if "emb" in body else None,
        phash=int(body["ph"], 16) if "ph" in body else None,
        model_version=body.get("m", ""),
    )


def normalise_scores(rec: ImageState) -> ImageState:
    """The record as it reads back from Redis (rounded, quantised): rank on this."""
    return decode_record(rec.image_id, encode_record(rec))


# --- document.py @ dccda32 -------------------------------------------------------------------
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


# --- store.py @ dccda32 ----------------------------------------------------------------------
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
            pipe.sadd(keys.hotels_key(namespace), *pending)
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
        return sorted(m.decode() for m in await self.redis.smembers(keys.hotels_key(namespace)))
