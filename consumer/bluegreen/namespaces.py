"""Namespaces: the unit of blue/green for the website.

Every gallery lives under `galleryrank:<ns>:...`; the website reads
`GET galleryrank:active` and then `GET galleryrank:<ns>:gallery:{<hotel>}`.
This module keeps each namespace's description (`galleryrank:<ns>:meta`),
promotes one (a single SET, so every reader sees the old or the new namespace
for each hotel, never a mix), lists them and drops unused ones.

Meta fields (a Redis hash; all strings):
    model_version, checkpoint ("" = the shipped default model), created_at,
    status (replaying | complete | interrupted; `galleryrank namespaces` shows
    the active one as live and a requested one as promoting),
    replay_from, replay_to, topic, group, started_at, finished_at, events,
    dead_lettered, promoted_at,
    end:<partition>  "complete to": every event of the topic below this offset
                     is applied in this namespace (the replay's end point,
                     raised by the live consumer when it leaves the namespace,
                     and while it catches a requested namespace up).

Promote in two steps (docs/operations.md, "Promote"): `promote` sets
`galleryrank:promoting`; the live consumers switch their writes to it and
catch it up; once every partition's events in it reach where the active
namespace is (`promote_ready`), `complete_promote` moves `galleryrank:active`.
The website therefore never sees the new namespace before it holds everything
the old one showed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from ..interfaces import RedisClient
from ..state import hotel_index, keys

# The name rule and the active namespace have one owner, state/namespace.py.
from ..state.namespace import NamespaceError, active_namespace, is_valid_name, validate_name

PROMOTING_KEY = keys.PROMOTING_KEY
# Keys per UNLINK call and SCAN page: big enough for few round trips, small
# enough that one call never blocks Redis noticeably.
DROP_BATCH = 500
END_PREFIX = "end:"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def requested_namespace(redis: RedisClient) -> str | None:
    """The namespace of a promote that is requested but not complete yet, if any."""
    value = await redis.get(PROMOTING_KEY)
    return value.decode() if value else None


async def write_target(redis: RedisClient) -> str:
    """Where the live consumer writes: the requested namespace while a promote is pending, else the active one."""
    return await requested_namespace(redis) or await active_namespace(redis)


markers_key = keys.handover_key


async def read_meta(redis: RedisClient, namespace: str) -> dict[str, str]:
    raw = await redis.hgetall(keys.meta_key(namespace))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return {_text(k): _text(v) for k, v in raw.items()}


async def write_meta(redis: RedisClient, namespace: str, **fields: object) -> None:
    clean = {k: ("" if v is None else str(v)) for k, v in fields.items()}
    if clean:
        await redis.hset(keys.meta_key(namespace), mapping=clean)  # type: ignore[misc]  # redis-py: Awaitable[T] | T


async def describe(redis: RedisClient, namespace: str, model_version: str, checkpoint: str | None) -> None:
    """Record which model writes a namespace, unless the namespace already says (HSETNX).

    The live consumer loads this checkpoint when the namespace is promoted, and
    `galleryrank namespaces` shows it.
    """
    key = keys.meta_key(namespace)
    pipe = redis.pipeline(transaction=False)
    pipe.hsetnx(key, "model_version", model_version)
    pipe.hsetnx(key, "checkpoint", checkpoint or "")
    pipe.hsetnx(key, "created_at", utc_now())
    await pipe.execute()


def end_offsets(meta: dict[str, str]) -> dict[int, int]:
    """partition -> offset below which the namespace has every event applied."""
    return {int(k[len(END_PREFIX) :]): int(v) for k, v in meta.items() if k.startswith(END_PREFIX)}


def end_fields(offsets: dict[int, int]) -> dict[str, int]:
    return {f"{END_PREFIX}{p}": o for p, o in offsets.items()}


async def raise_end_offset(redis: RedisClient, namespace: str, partition: int, offset: int) -> None:
    """end:<partition> = max(current, offset): both a replay and the live consumer may have filled it."""
    field = f"{END_PREFIX}{partition}"
    current = await redis.hget(keys.meta_key(namespace), field)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    if current is None or int(current) < offset:
        await redis.hset(keys.meta_key(namespace), field, str(offset))  # type: ignore[misc]  # redis-py: Awaitable[T] | T


@dataclass
class NamespaceInfo:
    name: str
    active: bool
    hotels: int
    keys: int
    model_version: str
    created_at: str
    status: str


async def _discover(redis: RedisClient) -> set[str]:
    """Namespaces that have a meta hash or a hotel index."""
    found: set[str] = set()
    for pattern in keys.namespace_marker_patterns():
        async for key in redis.scan_iter(match=pattern, count=DROP_BATCH):
            name = keys.namespace_of(_text(key))
            if is_valid_name(name):
                found.add(name)
    return found


async def count_keys(redis: RedisClient, namespace: str) -> int:
    total = 0
    async for _ in redis.scan_iter(match=keys.namespace_pattern(validate_name(namespace)), count=DROP_BATCH):
        total += 1
    return total


async def _sample_model_version(redis: RedisClient, namespace: str) -> str:
    """For a namespace without meta: the model_version of one of its galleries."""
    hotel = next(iter(await hotel_index.sample(redis, namespace, 1)), None)
    if hotel is None:
        return ""
    doc = await redis.get(keys.gallery_key(namespace, _text(hotel)))
    return orjson.loads(doc).get("model_version", "") if doc else ""


def shown_status(name: str, meta: dict[str, str], active: str, requested: str | None) -> str:
    """`live` for the active namespace, `promoting` for a requested one, else the replay's status."""
    if name == active:
        return "live"
    if name == requested:
        return "promoting"
    return meta.get("status", "")


async def list_namespaces(redis: RedisClient) -> list[NamespaceInfo]:
    active = await active_namespace(redis)
    requested = await requested_namespace(redis)
    names = await _discover(redis) | {active}
    out = []
    for name in sorted(names):
        meta = await read_meta(redis, name)
        out.append(
            NamespaceInfo(
                name=name,
                active=name == active,
                hotels=await hotel_index.count(redis, name),
                keys=await count_keys(redis, name),
                model_version=meta.get("model_version") or await _sample_model_version(redis, name),
                created_at=meta.get("created_at", ""),
                status=shown_status(name, meta, active, requested),
            )
        )
    return out


class PromotePending(NamespaceError):
    """The promote is requested but the live consumers have not caught the namespace up yet."""


async def _markers(redis: RedisClient, group_id: str, topic: str | None) -> dict[int, str]:
    """partition -> namespace, from the live group's hand-over markers (of `topic` if given)."""
    out: dict[int, str] = {}
    for k, v in (await redis.hgetall(markers_key(group_id))).items():  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        name, _, partition = _text(k).rpartition(":")
        if topic is None or name == topic:
            out[int(partition)] = _text(v)
    return out


async def has_live_group(redis: RedisClient, group_id: str, topic: str | None = None) -> bool:
    """Whether a live consumer group has written hand-over markers (of `topic`): a promote then goes in two steps."""
    return bool(await _markers(redis, group_id, topic))


async def promote_ready(redis: RedisClient, group_id: str, topic: str | None, target: str) -> list[int]:
    """Partitions that still keep a promote to `target` waiting (empty = ready to switch).

    A partition is ready when the live group writes it into `target` (its marker)
    and `target` is complete to at least where the active namespace is complete
    (`end:<p>`, recorded by the consumer when it left the active namespace).
    """
    active = await active_namespace(redis)
    markers = await _markers(redis, group_id, topic)
    ends_active = end_offsets(await read_meta(redis, active)) if active != target else {}
    ends_target = end_offsets(await read_meta(redis, target))
    return sorted(
        p for p, owner in markers.items() if owner != target or ends_target.get(p, -1) < ends_active.get(p, 0)
    )


async def complete_promote(redis: RedisClient, target: str) -> None:
    """Point `galleryrank:active` at `target` (one SET) and clear the request if it still names it."""
    await redis.set(keys.ACTIVE_KEY, target)
    # Compare-and-delete in one script on one key (works on Redis Cluster too): a newer request stays.
    await redis.eval(  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
        1,
        PROMOTING_KEY,
        target,
    )
    await write_meta(redis, target, promoted_at=utc_now())


async def promote(
    redis: RedisClient,
    namespace: str,
    *,
    force: bool = False,
    group_id: str | None = None,
    topic: str | None = None,
    wait_s: float = 0.0,
    poll_s: float = 0.05,
) -> str:
    """Make `namespace` the one the website reads; returns the previous active namespace.

    Without a live group (`group_id` None, or it has no hand-over markers) and with
    `force`: one SET of `galleryrank:active`, at once. Otherwise in two steps: set
    `galleryrank:promoting`; the live consumers (consumer/bluegreen/handover.py)
    switch their writes to `namespace` and catch it up; when every partition is
    ready (`promote_ready`) whoever sees it first (this call, polling for up to
    `wait_s`, or a consumer) moves `galleryrank:active`: one SET, atomic for every
    reader, and the new namespace already has every event the old one showed.
    Raises PromotePending when `wait_s` ran out first (the consumers still complete it).

    Refused (unless `force`) for a namespace with no galleries or whose replay has
    not completed, because the website would then show missing or half-rescored galleries.
    """
    validate_name(namespace)
    meta = await read_meta(redis, namespace)
    hotels = await hotel_index.count(redis, namespace)
    if not force:
        if not meta or not hotels:
            raise NamespaceError(
                f"namespace {namespace!r} has no {'meta' if not meta else 'galleries'}; --force to promote anyway"
            )
        if meta.get("status") in ("replaying", "interrupted"):
            raise NamespaceError(
                f"namespace {namespace!r} replay is {meta['status']}; wait for it to complete or --force"
            )
    previous = await active_namespace(redis)
    if force or group_id is None or previous == namespace or not await _markers(redis, group_id, topic):
        await redis.set(keys.ACTIVE_KEY, namespace)
        await redis.delete(PROMOTING_KEY)  # a forced switch also ends a pending request
        await write_meta(redis, namespace, promoted_at=utc_now())
        return previous
    await redis.set(PROMOTING_KEY, namespace)
    deadline = time.monotonic() + wait_s
    while True:
        if await active_namespace(redis) == namespace:  # a consumer completed it
            break
        waiting = await promote_ready(redis, group_id, topic, namespace)
        if not waiting:
            await complete_promote(redis, namespace)
            break
        if time.monotonic() >= deadline:
            raise PromotePending(
                f"promote of {namespace!r} requested; the live consumers (group {group_id}) have not caught it up "
                f"yet on partitions {waiting[:20]}; they switch the site to it when they have "
                f"(`galleryrank namespaces` shows it; `promote {previous} --force` cancels)"
            )
        await asyncio.sleep(poll_s)
    return previous


async def drop(redis: RedisClient, namespace: str, *, batch: int = DROP_BATCH) -> int:
    """Delete every key of a namespace that is not active; returns the number of keys removed.

    SCAN + UNLINK in batches: never one huge blocking DEL, and UNLINK frees
    memory in Redis' background thread.
    """
    validate_name(namespace)
    if namespace == await active_namespace(redis):
        raise NamespaceError(f"namespace {namespace!r} is active; promote another one first")
    removed = 0
    pending: list[bytes] = []
    async for key in redis.scan_iter(match=keys.namespace_pattern(namespace), count=batch):
        pending.append(key)
        if len(pending) >= batch:
            removed += await redis.unlink(*pending)
            pending.clear()
    if pending:
        removed += await redis.unlink(*pending)
    return removed


# --- compare two namespaces (before a promote) -----------------------------------------
@dataclass
class Comparison:
    old: str
    new: str
    top: int
    hotels: int = 0  # hotels in both (of the sample)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    image_sets_differ: list[str] = field(default_factory=list)  # hotels whose live images differ
    hero_changed: int = 0  # hotels whose first image changed
    top_overlap: float = 0.0  # mean |top-k old ∩ top-k new| / k
    aesthetic_shift: float = 0.0  # mean (new - old) aesthetic over images in both
    areas_old: float = 0.0  # mean distinct areas in the top k
    areas_new: float = 0.0
    # A factory: a plain tuple default would share its two sets across every Comparison.
    model_versions: tuple[set[str], set[str]] = field(default_factory=lambda: (set(), set()))


async def _sample_hotels(redis: RedisClient, namespace: str, sample: int) -> set[str]:
    return await hotel_index.sample(redis, namespace, sample)


async def compare(redis: RedisClient, old: str, new: str, *, top: int = 5, sample: int = 1000) -> Comparison:
    """How `new` would change what the website shows, on up to `sample` hotels of each side.

    For a complete replay of the same events, image sets must be equal (a
    difference means events missing on one side, or events that arrived after
    the replay's end point and only the live namespace has yet).
    """
    validate_name(old), validate_name(new)
    hotels = sorted(await _sample_hotels(redis, old, sample) | await _sample_hotels(redis, new, sample))
    result = Comparison(old, new, top)
    pipe = redis.pipeline(transaction=False)
    for hid in hotels:
        pipe.get(keys.gallery_key(old, hid))
        pipe.get(keys.gallery_key(new, hid))
    raw = await pipe.execute()
    overlaps, shifts, areas_old, areas_new = [], [], [], []
    for i, hid in enumerate(hotels):
        a, b = raw[2 * i], raw[2 * i + 1]
        if a is None or b is None:
            (result.only_old if b is None else result.only_new).append(hid)
            continue
        doc_a, doc_b = orjson.loads(a), orjson.loads(b)
        result.model_versions[0].add(doc_a.get("model_version", ""))
        result.model_versions[1].add(doc_b.get("model_version", ""))
        imgs_a, imgs_b = doc_a["images"], doc_b["images"]
        result.hotels += 1
        ids_a, ids_b = [x["image_id"] for x in imgs_a], [x["image_id"] for x in imgs_b]
        if set(ids_a) != set(ids_b):
            result.image_sets_differ.append(hid)
        if ids_a[:1] != ids_b[:1]:
            result.hero_changed += 1
        k = min(top, len(ids_a), len(ids_b))
        if k:
            overlaps.append(len(set(ids_a[:k]) & set(ids_b[:k])) / k)
        score_a = {x["image_id"]: x["aesthetic"] for x in imgs_a}
        shifts += [x["aesthetic"] - score_a[x["image_id"]] for x in imgs_b if x["image_id"] in score_a]
        areas_old.append(len({x["area"] for x in imgs_a[:top]}))
        areas_new.append(len({x["area"] for x in imgs_b[:top]}))

    def mean(values: Sequence[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    result.top_overlap, result.aesthetic_shift = mean(overlaps), mean(shifts)
    result.areas_old, result.areas_new = mean(areas_old), mean(areas_new)
    return result
