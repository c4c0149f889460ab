"""Start-up of a service process, in the order that keeps every failure readable.

1. Settings are validated when they are read (consumer/settings.py): a bad value is
   one line and exit code 2, before anything is loaded or connected.
2. The probe server (/healthz, /readyz, /metrics) starts next, so an orchestrator
   sees a live process whose readiness names what it still waits for.
3. Redis and Kafka are waited for with capped exponential backoff (except a configuration
   mistake: a refused password or SASL handshake, a missing permission, a Redis DB that does
   not exist stop start-up with one line naming the fix, consumer/config_mistakes.py); each failed try
   is one log line naming the address and the error (no traceback), and readiness
   says ``redis: 127.0.0.1:6379 unreachable: ConnectionError ...`` meanwhile.
4. Then the model loads and the scorer runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from . import config_mistakes
from .failures import Backoff, is_environment, retry
from .health import ServiceStatus, start_health_server
from .interfaces import RedisClient
from .settings import ConfigError, Settings, mask_password
from .stream.kafka import common_kwargs

log = logging.getLogger(__name__)

BACKOFF_START_S, BACKOFF_MAX_S = 0.5, 10.0


def _unreachable(exc: BaseException) -> bool:
    """The error model's environment (consumer/failures.py), plus any Kafka error while the
    broker is still coming up (a fresh broker answers metadata requests with errors first)."""
    return is_environment(exc) or isinstance(exc, KafkaError)


def _stop_on_config_mistake(exc: BaseException, settings: Settings) -> None:
    """A refused password or permission, a Redis DB that does not exist: waiting will not fix
    them, so start-up stops with one line naming the fix (the CLI: exit code 2), never retries."""
    mistake = config_mistakes.describe(exc, settings)
    if mistake:
        raise ConfigError(mistake) from None


async def start_probes(settings: Settings, status: ServiceStatus) -> web.AppRunner | None:
    """The probe server on metrics_host:metrics_port (None when metrics_port is 0)."""
    if not settings.metrics_port:
        return None
    return await start_health_server(settings.metrics_host, settings.metrics_port, status=status)


async def wait_until_reachable(
    name: str, where: str, attempt: Callable[[], Awaitable[object]], status: ServiceStatus
) -> None:
    """``await attempt()`` until it succeeds, backing off 0.5 s -> 10 s; readiness names what fails."""
    tries = 0

    def on_retry(exc: BaseException, delay: float, count: int) -> None:
        nonlocal tries
        tries = count
        why = f"{where} unreachable: {type(exc).__name__}: {str(exc)[:160]}"
        status.wait(name, why)
        log.warning("%s (try %d); retrying in %.1f s", why, count, delay)

    await retry(
        attempt,
        name,
        retry_if=_unreachable,
        backoff=Backoff(BACKOFF_START_S, BACKOFF_MAX_S, jitter=False),
        on_retry=on_retry,
    )
    if tries:
        log.info("%s at %s reachable after %d failed tries", name, where, tries)
    status.ok(name)


async def wait_for_redis(redis: RedisClient, settings: Settings, status: ServiceStatus) -> None:
    where = mask_password(settings.redis_url)
    status.wait("redis", f"{where}: not checked yet")

    async def ping() -> None:
        try:
            await asyncio.wait_for(redis.ping(), 5.0)  # type: ignore[arg-type]  # redis-py: Awaitable[T] | T
        except Exception as exc:
            _stop_on_config_mistake(exc, settings)
            raise

    await wait_until_reachable("redis", where, ping, status)


async def wait_for_kafka(settings: Settings, status: ServiceStatus) -> None:
    async def metadata() -> None:
        admin = AIOKafkaAdminClient(**common_kwargs(settings), request_timeout_ms=5000)
        try:
            await asyncio.wait_for(admin.start(), 10.0)
            await asyncio.wait_for(admin.list_topics(), 10.0)
        except Exception as exc:
            _stop_on_config_mistake(exc, settings)
            # aiokafka reports a refused SASL handshake as "Unable to bootstrap": ask the broker alone
            mistake = await config_mistakes.kafka_auth_mistake(settings)
            if mistake:
                raise ConfigError(mistake) from None
            raise
        finally:
            await admin.close()

    await wait_until_reachable("kafka", settings.bootstrap_servers, metadata, status)
    status.wait("kafka", "no partitions assigned yet")
