"""Building a running scorer from Settings: model, Redis client, health server.

`galleryrank consume`, `demo`, `replay` and the tests all start the scorer
through `run_scorer`, so there is one way it is wired.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .health import ServiceStatus
from .settings import Settings
from .stream.scorer import GalleryScorer, RunSummary

log = logging.getLogger(__name__)


def load_model(settings: Settings, checkpoint: str | None = None):
    if settings.model_server:
        # Scores come from a Triton server (models/triton_client.py); its model is the one
        # its repository holds, so a checkpoint here cannot choose it.
        from galleryrank.models.triton_client import TritonScoringModel

        if checkpoint and checkpoint != settings.checkpoint:
            log.warning(
                "checkpoint %s ignored: the model server %s serves its own model", checkpoint, settings.model_server
            )
        model = TritonScoringModel(settings.model_server, timeout_s=settings.model_server_timeout_s)
        log.info(
            "model %s from %s (triton backend), areas=%s",
            model.model_version,
            settings.model_server,
            ",".join(model.areas),
        )
        return model
    from galleryrank.models import load_scoring_model

    model = load_scoring_model(
        checkpoint=checkpoint or settings.checkpoint,
        device=settings.device,
        backend=settings.backend,
        cache_dir=settings.model_cache_dir,
    )
    log.info(
        "model %s on %s (%s backend), areas=%s", model.model_version, model.device, model.backend, ",".join(model.areas)
    )
    return model


def redis_client(settings: Settings) -> aioredis.Redis | RedisCluster:
    """A standalone client, or with `redis_cluster` a cluster client seeded by redis_url.

    Explicit, not auto-detected: detecting needs a round trip (INFO cluster) before
    the client exists, and a wrong guess would show up only on the first MOVED.
    """
    # health_check_interval: detect a half-dead connection before writing on it.
    options = {"health_check_interval": 10, "socket_timeout": 10}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    return aioredis.Redis.from_url(settings.redis_url, **options)


async def caught_up(scorer: GalleryScorer) -> bool:
    """True when every assigned partition is committed up to its high watermark.

    Uses the Fetch high watermark, not `end_offsets()`: Tansu answers the latter
    with the base offset of the last batch + 1 (design.md).
    """
    assigned = scorer.consumer.assignment()
    if not assigned:
        return False
    for tp in assigned:
        high = scorer.consumer.highwater(tp)
        if high is None:
            return False
        committed = scorer.tracker.committable({tp}).get(tp)
        if committed is None:
            committed = await scorer.consumer.committed(tp) or 0
        if committed < high:
            return False
    return True


async def run_scorer(settings: Settings, *args, **kwargs) -> RunSummary:
    """Run a scorer: the probe server first, then Redis, the model and Kafka (consumer/startup.py)."""
    from .startup import start_probes

    status = ServiceStatus()
    probes = await start_probes(settings, status)
    try:
        return await _run_scorer(settings, *args, status=status, **kwargs)
    finally:
        if probes is not None:
            await probes.cleanup()


async def _run_scorer(
    settings: Settings,
    model=None,
    *,
    redis: aioredis.Redis | None = None,
    until_caught_up: bool = False,
    install_signal_handlers: bool = True,
    status: ServiceStatus,
    **scorer_kwargs,
) -> RunSummary:
    own_redis = redis is None
    redis = redis or redis_client(settings)
    from .startup import wait_for_kafka, wait_for_redis

    await wait_for_redis(redis, settings, status)
    if settings.namespace is None and not scorer_kwargs.keys() & {"namespace", "on_assigned", "on_tick"}:
        # The live consumer: follow galleryrank:active across promotes (consumer/bluegreen/handover.py).
        from .bluegreen.handover import Handover

        handover = Handover(settings, redis, scorer_kwargs.get("group_id"))
        model = await handover.start(model)
        scorer_kwargs.update(handover.scorer_kwargs())
    model = model or load_model(settings)
    status.model_loaded(model, settings.checkpoint)
    await wait_for_kafka(settings, status)
    if settings.namespace:  # a fixed-namespace scorer (blue/green) records which model fills it
        from .bluegreen.namespaces import describe

        try:
            await describe(redis, settings.namespace, model.model_version, settings.checkpoint)
        except Exception as exc:  # Redis down at start: the writer waits for it; this is only a label
            log.warning("could not record the model of namespace %s: %s", settings.namespace, exc)
    scorer = GalleryScorer(settings, model, redis, stop_at=caught_up if until_caught_up else None, **scorer_kwargs)
    status.attach(scorer, settings.decode_timeout_s)
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, scorer.stop)
    try:
        return await scorer.run()
    finally:
        if own_redis:
            await redis.aclose()
