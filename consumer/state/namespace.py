"""The namespace: what a name may be, and which one is active. The one owner of both.

Settings (``GALLERYRANK_NAMESPACE``), the store, the read API, replay, promote/drop and
the hand-over all check names with ``validate_name`` and read the active namespace with
``active_namespace``.

A name becomes part of key names and of SCAN patterns (``drop``), so it is kept to
characters that are neither ':' (key structure) nor glob syntax (* ? [ ] \\), checked
with ``fullmatch`` (``$`` would let "live\\n" in). A name may not be the first segment of
a key that belongs to no namespace (``keys.GLOBAL_SEGMENTS``: ``galleryrank:active``,
``galleryrank:handover:*``, ...): such a namespace would mix with those keys, and
dropping it would delete them.
"""

from __future__ import annotations

import re

from ..interfaces import RedisClient
from . import keys

NAMESPACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RESERVED = keys.GLOBAL_SEGMENTS
DEFAULT_NAMESPACE = keys.DEFAULT_NAMESPACE


class NamespaceError(ValueError):
    """An operation on a namespace that must not be done (invalid, active, empty...)."""


def is_valid_name(namespace: str) -> bool:
    return bool(NAMESPACE_RE.fullmatch(namespace or "")) and namespace not in RESERVED


def validate_name(namespace: str) -> str:
    if not is_valid_name(namespace):
        raise NamespaceError(
            f"invalid namespace {namespace!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            f"letter or digit (not {', '.join(sorted(RESERVED))})"
        )
    return namespace


async def active_namespace(redis: RedisClient) -> str:
    """``GET galleryrank:active``; absent = ``live`` (the website's read contract)."""
    value = await redis.get(keys.ACTIVE_KEY)
    return value.decode() if value else DEFAULT_NAMESPACE


class WriteTarget:
    """The namespace a running scorer writes into: its one owner at run time.

    Made by the composition root (consumer/runtime.py) from ``settings.namespace``; the
    writer resolves it at each write, the hand-over switches it. ``current`` None = the
    active namespace, read at each write."""

    def __init__(self, redis: RedisClient, namespace: str | None = None):
        self.redis = redis
        self.current = None if namespace is None else validate_name(namespace)

    def switch(self, namespace: str | None) -> None:
        self.current = namespace

    async def resolve(self) -> str:
        return self.current or await active_namespace(self.redis)
