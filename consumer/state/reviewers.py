"""Reviewers: the people allowed to write labels (and, as editors, pins and hides) through the API.

The operator issues one bearer token per person (``galleryrank reviewers add``) and revokes it
(``revoke``). Redis keeps, per reviewer id (hash ``keys.REVIEWERS_KEY``), only the role, the
times, and a salted scrypt hash of the token's secret: a copy of Redis gives no usable token.
The token is shown once, at ``add``, and never logged.

A token reads ``grv1.<reviewer_id>.<secret>`` (secret: 32 random bytes, URL-safe base64, no
dots): the id says which record to check, so a request costs one HGET and, the first time a
process sees the token, one scrypt (~30 ms); after that the process remembers which stored hash
the token matched, and a request costs the HGET and a constant-time compare. Revoking changes the
record, so it takes effect on the next request everywhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from ..ids import valid_id
from ..interfaces import RedisClient
from .keys import REVIEWERS_KEY

REVIEWER = "reviewer"  # labels and ratings
EDITOR = "editor"  # also pins, unpins, hides, unhides
ROLES = (REVIEWER, EDITOR)
TOKEN_PREFIX = "grv1"
# scrypt's interactive-login cost (RFC 7914: N=2^14, r=8, p=1; 16 MiB). The secret has 256 random
# bits, so the cost only has to make a stolen Redis dump useless, not resist guessing.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_VERIFIED_MAX = 4096  # tokens this process has checked once (sha256 of token -> stored hash)


class ReviewerError(ValueError):
    """A bad reviewer id or role, or an id that is already active."""


@dataclass(frozen=True)
class Reviewer:
    reviewer_id: str
    role: str
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def can_edit(self) -> bool:
        return self.role == EDITOR


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)


def _of(reviewer_id: str, raw: bytes) -> tuple[Reviewer, dict]:
    body = orjson.loads(raw)
    return Reviewer(reviewer_id, body["role"], body["created_at"], body.get("revoked_at")), body


def split_token(token: str) -> tuple[str, str] | None:
    """(reviewer id, secret) of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX + ".") or len(token) > 400:
        return None
    reviewer_id, _, secret = token[len(TOKEN_PREFIX) + 1 :].rpartition(".")
    if not reviewer_id or not valid_id(reviewer_id) or len(secret) < 40:
        return None
    return reviewer_id, secret


async def add(redis: RedisClient, reviewer_id: str, role: str) -> str:
    """Register a reviewer (or re-issue a revoked one); returns the token, the only time it exists."""
    if not valid_id(reviewer_id):
        raise ReviewerError(f"reviewer id {reviewer_id[:40]!r} is not an id (1-128 printable, no whitespace/braces)")
    if role not in ROLES:
        raise ReviewerError(f"role must be one of {', '.join(ROLES)}")
    existing = await get(redis, reviewer_id)
    if existing is not None and existing.active:
        raise ReviewerError(f"reviewer {reviewer_id!r} already has an active token; revoke it first")
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = await asyncio.to_thread(_hash, secret, salt, **_SCRYPT)
    body = {
        "role": role,
        "created_at": _now(),
        "revoked_at": None,
        "kdf": "scrypt",
        **_SCRYPT,
        "salt": base64.b64encode(salt).decode(),
        "hash": base64.b64encode(digest).decode(),
    }
    await redis.hset(REVIEWERS_KEY, reviewer_id, orjson.dumps(body).decode())  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return f"{TOKEN_PREFIX}.{reviewer_id}.{secret}"


async def get(redis: RedisClient, reviewer_id: str) -> Reviewer | None:
    raw = await redis.hget(REVIEWERS_KEY, reviewer_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return _of(reviewer_id, raw)[0] if raw else None


async def all_reviewers(redis: RedisClient) -> list[Reviewer]:
    raw: dict[bytes, bytes] = await redis.hgetall(REVIEWERS_KEY)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return sorted((_of(k.decode(), v)[0] for k, v in raw.items()), key=lambda r: r.reviewer_id)


async def revoke(redis: RedisClient, reviewer_id: str) -> bool:
    """Revoke the reviewer's token (the record stays, for the labels that name them); False if unknown."""
    raw = await redis.hget(REVIEWERS_KEY, reviewer_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    if not raw:
        return False
    body = orjson.loads(raw)
    if body.get("revoked_at") is None:
        body["revoked_at"] = _now()
        await redis.hset(REVIEWERS_KEY, reviewer_id, orjson.dumps(body).decode())  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    return True


class TokenChecker:
    """Checks bearer tokens against Redis (see the module docstring)."""

    def __init__(self, redis: RedisClient):
        self.redis = redis
        self._verified: dict[bytes, str] = {}  # sha256(token) -> the stored hash it matched

    async def authenticate(self, token: str) -> Reviewer | None:
        """The active reviewer the token belongs to, else None (unknown, malformed, revoked, wrong)."""
        parts = split_token(token)
        if parts is None:
            return None
        reviewer_id, secret = parts
        raw = await self.redis.hget(REVIEWERS_KEY, reviewer_id)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
        if not raw:
            return None
        reviewer, body = _of(reviewer_id, raw)
        if not reviewer.active:
            return None
        stored = str(body["hash"])
        fingerprint = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(fingerprint)
        if known is not None and hmac.compare_digest(known.encode(), stored.encode()):
            return reviewer
        salt = base64.b64decode(body["salt"])
        digest = await asyncio.to_thread(_hash, secret, salt, int(body["n"]), int(body["r"]), int(body["p"]))
        if not hmac.compare_digest(digest, base64.b64decode(stored)):
            return None
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[fingerprint] = stored
        return reviewer
