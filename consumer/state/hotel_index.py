"""The hotel index of a namespace (``galleryrank:<ns>:hotels``): which hotels it holds.

A sorted set whose scores are all 0, so Redis orders its members by their bytes
and ``ZRANGEBYLEX`` finds every id starting with a prefix in O(log n + limit):
the read API's search (``GET /hotels?q=``) costs the same at 200 k hotels as at 20.

Older namespaces hold the index as a plain SET. Every reader here asks ``TYPE``
first and reads either; the writer's ``add`` converts a SET into the sorted set
inside its own Lua script (one key, so atomic and Redis-Cluster safe) the first
time it writes to such a namespace; ``migrate`` does the same for a namespace
nobody writes any more (``galleryrank namespaces`` / the read API still read it
as it is). Converting 200 k members blocks that Redis for ~0.2 s, once.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..interfaces import RedisClient, RedisPipeline
from . import keys

_TO_ZSET_LUA = """
local function zadd_all(members)
  for i = 1, #members, 500 do
    local args = {}
    for j = i, math.min(i + 499, #members) do
      args[#args + 1] = 0
      args[#args + 1] = members[j]
    end
    redis.call('ZADD', KEYS[1], unpack(args))
  end
end
if redis.call('TYPE', KEYS[1]).ok == 'set' then
  local old = redis.call('SMEMBERS', KEYS[1])
  redis.call('DEL', KEYS[1])
  zadd_all(old)
end
zadd_all(ARGV)
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def add(pipe: RedisPipeline, namespace: str, hotel_ids: Iterable[str]) -> None:
    """Queue on ``pipe`` (a pipeline or a client) the addition of ``hotel_ids`` to the index."""
    ids = list(hotel_ids)
    if ids:
        pipe.eval(_TO_ZSET_LUA, 1, keys.hotels_key(namespace), *ids)


async def _kind(redis: RedisClient, key: str) -> str:
    return _text(await redis.type(key))


async def count(redis: RedisClient, namespace: str) -> int:
    key = keys.hotels_key(namespace)
    kind = await _kind(redis, key)
    if kind == "zset":
        return int(await redis.zcard(key))
    if kind == "set":
        return int(await redis.scard(key))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return 0


async def members(redis: RedisClient, namespace: str) -> list[str]:
    """Every hotel id, sorted (reads the whole index: for operations, not for requests)."""
    key = keys.hotels_key(namespace)
    kind = await _kind(redis, key)
    if kind == "zset":
        return [_text(m) for m in await redis.zrange(key, 0, -1)]
    if kind == "set":
        return sorted(_text(m) for m in await redis.smembers(key))  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return []


async def sample(redis: RedisClient, namespace: str, n: int) -> set[str]:
    """Up to ``n`` distinct hotel ids chosen at random (all of them when there are fewer)."""
    key = keys.hotels_key(namespace)
    kind = await _kind(redis, key)
    if kind == "zset":
        return {_text(m) for m in await redis.zrandmember(key, n)}
    if kind == "set":
        return {_text(m) for m in await redis.srandmember(key, n)}  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return set()


async def search(
    redis: RedisClient, namespace: str, prefix: str, limit: int, after: str = ""
) -> tuple[list[str], bool]:
    """(the first ``limit`` hotel ids starting with ``prefix`` and sorting after ``after``, in byte
    order; whether there are more). ``after`` = the last id of the previous page (paging)."""
    key = keys.hotels_key(namespace)
    kind = await _kind(redis, key)
    if kind == "zset":
        raw = prefix.encode()
        # UTF-8 never contains the byte 0xFF: every id starting with the prefix sorts below prefix + 0xFF.
        low, high = (b"[" + raw, b"(" + raw + b"\xff") if raw else (b"-", b"+")
        if after and after.encode() >= raw:
            low = b"(" + after.encode()
        found = [_text(m) for m in await redis.zrangebylex(key, low, high, start=0, num=limit + 1)]
        return found[:limit], len(found) > limit
    if kind == "set":  # an index written before the sorted set: a full scan, until the next write converts it
        glob = "".join(f"\\{c}" if c in "*?[]\\" else c for c in prefix) + "*"
        found = sorted({_text(m) async for m in redis.sscan_iter(key, match=glob, count=1000)})
        found = [h for h in found if h.encode() > after.encode()] if after else found
        return found[:limit], len(found) > limit
    return [], False
