"""Start-up errors that are the operator's configuration, said in one line with the fix.

At start-up a refused password, a missing permission or a Redis database that does not exist
will not go away by waiting: the command stops with this line (exit code 2) instead of retrying
forever. (Once running, the same errors are the environment's, consumer/failures.py: retried,
never blamed on an event.) `describe` walks causes and exception groups, so a wrapped refusal
is found too.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiokafka import errors as kafka_errors
from redis import exceptions as redis_errors

from .settings import Settings, mask_password

_KAFKA_AUTH = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
    kafka_errors.AuthenticationMethodNotSupported,
)
_KAFKA_ACL = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def _text(e: BaseException) -> str:
    return " ".join(str(e).split())[:160]


def describe(exc: BaseException, settings: Settings) -> str | None:
    """One line naming the cause and the fix when ``exc`` is a configuration mistake, else None."""
    redis_at = mask_password(settings.redis_url)
    for e in _chain(exc):
        text = _text(e)
        low = text.lower()
        if isinstance(e, redis_errors.AuthenticationError):
            if "without any password configured" in low:
                return (
                    f"Redis at {redis_at} has no password but the URL sends one: "
                    "remove it from GALLERYRANK_REDIS_URL / --redis-url"
                )
            if "noauth" in low or "authentication required" in low:
                return (
                    f"Redis at {redis_at} requires a password: put it in GALLERYRANK_REDIS_URL / --redis-url "
                    "(redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@... for an ACL user)"
                )
            return (
                f"Redis at {redis_at} refused the user/password ({text}): "
                "fix them in GALLERYRANK_REDIS_URL / --redis-url"
            )
        if isinstance(e, redis_errors.NoPermissionError | redis_errors.AuthorizationError):
            return (
                f"Redis at {redis_at}: the user lacks a permission ({text}): grant it (ACL SETUSER) "
                "or use another user in GALLERYRANK_REDIS_URL"
            )
        if isinstance(e, redis_errors.ResponseError) and "db index is out of range" in low:
            return (
                f"Redis at {redis_at} has no database with that index ({text}): use a smaller /db in "
                "GALLERYRANK_REDIS_URL (Redis has 16 by default: 0..15)"
            )
        if isinstance(e, _KAFKA_AUTH):
            return (
                f"Kafka at {settings.bootstrap_servers} refused SASL authentication ({type(e).__name__}: {text}): "
                "check GALLERYRANK_SECURITY_PROTOCOL, GALLERYRANK_SASL_MECHANISM, GALLERYRANK_SASL_USERNAME "
                "and GALLERYRANK_SASL_PASSWORD"
            )
        if isinstance(e, _KAFKA_ACL):
            return (
                f"Kafka at {settings.bootstrap_servers} refused access ({type(e).__name__}: {text}): "
                "grant this user's ACLs for GALLERYRANK_TOPIC / GALLERYRANK_GROUP_ID, or use those it has"
            )
    return None


async def kafka_auth_mistake(settings: Settings, timeout_s: float = 10.0) -> str | None:
    """The SASL handshake with the first bootstrap server, alone: aiokafka's bootstrap logs a refused
    handshake and then reports only "Unable to bootstrap", which reads like a broker that is down."""
    if not settings.security_protocol.startswith("SASL"):
        return None
    import asyncio

    from aiokafka.conn import create_conn

    from .stream.kafka import common_kwargs

    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    kw = {k: v for k, v in common_kwargs(settings).items() if k != "bootstrap_servers"}
    try:
        conn = await asyncio.wait_for(create_conn(host.strip("[]"), int(port), **kw), timeout_s)
    except Exception as exc:  # only the refusals are ours to name; anything else: not known here
        return describe(exc, settings)
    conn.close()
    return None


def unreachable(exc: BaseException, settings: Settings) -> str | None:
    """One line for a server that does not answer (for one-shot commands, which do not wait)."""
    for e in _chain(exc):
        if isinstance(e, redis_errors.ConnectionError | redis_errors.TimeoutError):
            return (
                f"Redis at {mask_password(settings.redis_url)} unreachable ({_text(e)}): is it running? "
                "Set GALLERYRANK_REDIS_URL / --redis-url"
            )
        if isinstance(e, kafka_errors.KafkaConnectionError):
            return (
                f"Kafka at {settings.bootstrap_servers} unreachable ({_text(e)}): is it running? "
                "Set GALLERYRANK_BOOTSTRAP_SERVERS / --bootstrap-servers"
            )
    return None
