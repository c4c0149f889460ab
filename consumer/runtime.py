"""The composition root: every client (Kafka, Redis, HTTP, the model) is built here from Settings.

`galleryrank consume`, `demo`, `replay` and the tests all build the scorer
through `build_scorer` / `run_scorer`, so there is one way it is wired; the
scorer, replay and hand-over get their clients passed in.

Imports of the data path and of the model stack stay inside the functions:
the operations commands (promote, namespaces, drop, ...) import this module
for `redis_client` and must start without loading torch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from .health import ServiceStatus
from .interfaces import RedisClient, ScoringBackend
from .settings import Settings

if TYPE_CHECKING:
    from .images.decode_pool import DecodePool
    from .images.download import ImageDownloader
    from .state.namespace import WriteTarget
    from .stream.scorer import GalleryScorer, RunSummary, ScorerControl, ScorerParts

log = logging.getLogger(__name__)


def load_model(settings: Settings, checkpoint: str | None = None) -> ScoringBackend:
    if settings.model_server:
        # Scores come from a Triton server (models/triton_client.py); its model is the one
        # its repository holds, so a checkpoint here cannot choose it.
        from galleryrank.models.triton_client import TritonScoringModel

        if checkpoint and checkpoint != settings.checkpoint:
            log.warning(
                "checkpoint %s ignored: the model server %s serves its own model", checkpoint, settings.model_server
            )
        model: ScoringBackend = TritonScoringModel(settings.model_server, timeout_s=settings.model_server_timeout_s)
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


def load_namespace_model(settings: Settings, checkpoint: str | None) -> ScoringBackend:
    """The model a namespace's meta names ("" = the shipped default); a model server serves its own, whatever it names."""
    if settings.model_server:
        return load_model(settings, checkpoint)
    return load_model(settings.model_copy(update={"checkpoint": None}), checkpoint or None)


def load_cam_model(settings: Settings) -> ScoringBackend:
    """The read API's CAM model: torch (CAM needs the feature map, which only the torch module exposes)."""
    from galleryrank.models import load_scoring_model

    log.info("loading the model for CAM overlays (checkpoint=%s, device=%s)", settings.checkpoint, settings.device)
    return load_scoring_model(settings.checkpoint, device=settings.device, backend="torch")


def build_cam_tools(settings: Settings, workers: int) -> tuple[ImageDownloader, DecodePool]:
    """The read API's CAM downloader (SSRF-guarded, as the scorer's) and its killable decode pool."""
    from .images.decode_pool import DecodePool
    from .images.download import ImageDownloader

    pool = DecodePool(
        workers,
        cpu_budget_s=settings.decode_timeout_s,
        memory_budget_bytes=settings.decode_memory_mb << 20,
        max_pixels=settings.max_image_pixels,
        name="cam-decode",
    )
    return ImageDownloader(settings), pool


def redis_client(settings: Settings) -> RedisClient:
    """A standalone client, or with `redis_cluster` a cluster client seeded by redis_url.

    Explicit, not auto-detected: detecting needs a round trip (INFO cluster) before
    the client exists, and a wrong guess would show up only on the first MOVED.
    """
    # health_check_interval: detect a half-dead connection before writing on it.
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, health_check_interval=10, socket_timeout=10)
    return aioredis.Redis.from_url(settings.redis_url, health_check_interval=10, socket_timeout=10)


def build_parts(
    settings: Settings,
    model: ScoringBackend,
    redis: RedisClient,
    group_id: str | None = None,
    target: WriteTarget | None = None,
) -> ScorerParts:
    """Every collaborator of a scorer: the Kafka consumer (of `group_id`, default the settings'
    group), the DLQ producer and its marks, the HTTP downloader, the store and its writer into
    `target` (default: ``settings.namespace``, else the active one), the offset tracker, the
    micro-batcher, the decode pool and the GPU decoder."""
    from .images import decode_path
    from .images.decode_pool import DecodePool, available_cpus
    from .images.download import ImageDownloader
    from .state.document import ranking_config
    from .state.namespace import WriteTarget
    from .state.store import GalleryStore
    from .state.writer import StateWriter
    from .stream.batcher import MicroBatcher
    from .stream.dlq import DeadLetters
    from .stream.dlq_dedupe import DlqMarks
    from .stream.kafka import make_consumer, make_producer
    from .stream.offsets import OffsetTracker
    from .stream.redelivery import KnownEvents
    from .stream.scorer import ScorerParts

    group = group_id or settings.group_id
    store = GalleryStore(
        redis,
        ranking_config(settings.ranking_strategy, settings.ranking_diversity),
        cache_images=settings.hotel_cache_images,
    )
    target = target or WriteTarget(redis, settings.namespace)
    producer = make_producer(settings)
    # Decodes run in killable worker processes under a CPU-time and a byte budget
    # (consumer/images/decode_pool.py); as many as the container's CPUs by default.
    pool = DecodePool(
        settings.decode_workers or available_cpus(),
        cpu_budget_s=settings.decode_timeout_s,
        memory_budget_bytes=settings.decode_memory_mb << 20,
        max_pixels=settings.max_image_pixels,
    )
    return ScorerParts(
        consumer=make_consumer(settings, group),
        producer=producer,
        downloader=ImageDownloader(settings),
        store=store,
        target=target,
        writer=StateWriter(store, target.resolve, coalesce_s=settings.write_coalesce_ms / 1000),
        dlq=DeadLetters(producer, settings.dlq_topic),
        dlq_marks=DlqMarks(redis, group),
        tracker=OffsetTracker(),
        batcher=MicroBatcher(model.score, model.areas, settings.batch_size, settings.max_batch_delay_ms / 1000),
        decode_pool=pool,
        # On a CUDA model JPEGs are decoded in batches on the GPU (settings.decode_path: the hardware
        # decoder, else nvJPEG; consumer/images/decode_path.py); None = the pool. Batches are
        # bounded by the scorer's fetch slots: raise download_concurrency on a GPU.
        gpu_decoder=decode_path.build(
            settings.decode_path,
            model,
            settings.max_image_pixels,
            settings.batch_size,
            fallback=lambda data: pool.decode(data, model.input_size),
            max_bytes=settings.decode_memory_mb << 20,
        ),
        known=KnownEvents(redis, getattr(store, "cache", None)),
    )


def build_scorer(
    settings: Settings,
    model: ScoringBackend,
    redis: RedisClient,
    *,
    group_id: str | None = None,
    control: ScorerControl | None = None,
    target: WriteTarget | None = None,
    parts: ScorerParts | None = None,
) -> GalleryScorer:
    """A GalleryScorer on `parts` (default: freshly built ones) steered by `control`."""
    from .stream.scorer import GalleryScorer

    parts = parts or build_parts(settings, model, redis, group_id, target)
    return GalleryScorer(settings, model, parts, control=control)


async def caught_up(scorer: GalleryScorer) -> bool:
    """A `stop_at` hook: every assigned partition is committed up to its high watermark."""
    return await scorer.caught_up()


async def run_scorer(settings: Settings, *args: Any, **kwargs: Any) -> RunSummary:
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
    model: ScoringBackend | None = None,
    *,
    redis: RedisClient | None = None,
    until_caught_up: bool = False,
    install_signal_handlers: bool = True,
    status: ServiceStatus,
    group_id: str | None = None,
    control: ScorerControl | None = None,
) -> RunSummary:
    own_redis = redis is None
    redis = redis or redis_client(settings)
    from .startup import wait_for_kafka, wait_for_redis

    await wait_for_redis(redis, settings, status)
    from .state.namespace import WriteTarget

    target = WriteTarget(redis, settings.namespace)  # the namespace's one owner while this scorer runs
    from .stream.scorer import Hooks

    # Plain hooks (tests, demo) ride on top of the hand-over; a replay's control replaces it.
    hooks = control if isinstance(control, Hooks) else None
    if settings.namespace is None and (control is None or hooks is not None):
        # The live consumer: follow galleryrank:active across promotes (consumer/bluegreen/handover.py).
        from .bluegreen.handover import Handover

        loader = lambda ckpt: load_namespace_model(settings, ckpt)  # noqa: E731
        handover = Handover(settings, redis, group_id, load_model=loader, target=target)
        model = await handover.start(model)
        control = hooks.over(handover) if hooks is not None else handover
    model = model or load_model(settings)
    status.model_loaded(model, settings.checkpoint)
    await wait_for_kafka(settings, status)
    if settings.namespace:  # a fixed-namespace scorer (blue/green) records which model fills it
        from .bluegreen.namespaces import describe

        try:
            await describe(redis, settings.namespace, model.model_version, settings.checkpoint)
        except Exception as exc:  # Redis down at start: the writer waits for it; this is only a label
            log.warning("could not record the model of namespace %s: %s", settings.namespace, exc)
    if until_caught_up:
        control = Hooks(stop_at=caught_up, base=control)
    parts = build_parts(settings, model, redis, group_id, target)
    scorer = build_scorer(settings, model, redis, control=control, parts=parts)
    status.attach(scorer, parts.decode_pool, settings.decode_timeout_s)
    if install_signal_handlers:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, scorer.stop)
    try:
        return await scorer.run()
    finally:
        if own_redis:
            await redis.aclose()
