"""How the live consumer follows `galleryrank:active` across a promote.

The live consumer (GALLERYRANK_NAMESPACE unset) writes into ONE namespace at
a time, `current`, and keeps, per partition, a marker in Redis saying which
namespace the group's committed offset of that partition belongs to
(hash `galleryrank:handover:<group>`, field `<topic>:<partition>`).

Every namespace records how far it is complete: meta `end:<partition>` = every
event below that offset is applied in it (a replay's end point; the live
consumer raises it when it leaves a namespace).

Switch (every CHECK_INTERVAL_S the main loop asks `GET galleryrank:active`):
1. load the new namespace's model (the checkpoint in its meta) unless it is the
   one already running; if it cannot be read, keep the current model and log
   an error (the namespace then gets this model's scores for new events);
2. finish every in-flight event (they still go into the old namespace) and
   commit: position P per partition; record old `end:<p>` = P;
3. switch model and namespace; per partition seek to T = min(P, new end:<p>),
   commit T, then set the partition's marker to the new namespace.
Events from T on are processed again into the new namespace; those the replay
already applied are no-ops (per-image fences), the rest (published during or
after the replay) are applied now. Nothing is lost and nothing of the old
model is written into the new namespace.

Crash safety: the marker flips only after T is committed. A consumer that
takes over a partition (restart, rebalance) whose marker names another
namespace than `current` seeks to min(committed, current's end:<p>) itself.
A partition without a marker is taken as belonging to `current` (first start).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..settings import ConfigError, Settings
from ..stream.batcher import MicroBatcher
from . import namespaces

log = logging.getLogger(__name__)

# How often the live consumer reads galleryrank:active: one GET per 0.5 s is
# nothing for Redis, and the website sees new events of the promoted namespace
# within about this long after a promote.
CHECK_INTERVAL_S = 0.5


def markers_key(group_id: str) -> str:
    return f"galleryrank:handover:{group_id}"


def _field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


async def _retrying(call, what: str):
    """`await call()` until Redis answers (capped exponential backoff), for reads that must not be skipped."""
    delay = 0.1
    while True:
        try:
            return await call()
        except _REDIS_DOWN as exc:
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _check_explicit_checkpoint(settings: Settings, namespace: str, meta: dict[str, str]) -> None:
    """An explicit GALLERYRANK_CHECKPOINT takes effect or stops the service: it is never silently
    replaced by the model the namespace records (that would mix two models' scores in one namespace)."""
    explicit = settings.checkpoint
    if not explicit or not meta.get("model_version"):
        return
    recorded = meta.get("checkpoint") or ""
    if recorded and os.path.realpath(os.path.expanduser(recorded)) == os.path.realpath(os.path.expanduser(explicit)):
        return
    raise ConfigError(
        f"GALLERYRANK_CHECKPOINT / --checkpoint = {explicit!r}, but namespace {namespace!r} is filled by model "
        f"{meta['model_version']} ({recorded or 'the shipped default'}): rescore into a new namespace "
        "(galleryrank replay, then promote) or unset the checkpoint"
    )


def load_namespace_model(settings: Settings, checkpoint: str | None):
    """The model a namespace's meta names ("" / None = the shipped default model)."""
    if settings.model_server:  # the model server's model, whatever the meta names
        from ..runtime import load_model

        return load_model(settings, checkpoint)
    from galleryrank.models import load_scoring_model

    return load_scoring_model(
        checkpoint=checkpoint or None,
        device=settings.device,
        backend=settings.backend,
        cache_dir=settings.model_cache_dir,
    )


class Handover:
    def __init__(self, settings: Settings, redis, group_id: str | None = None):
        self.settings = settings
        self.redis = redis
        self.group_id = group_id or settings.group_id
        self.current: str = ""
        self.switches = 0
        self._pending: dict[TopicPartition, int | None] = {}  # marker to set after committing this offset
        self._next_check = 0.0

    # --- startup ---------------------------------------------------------------
    async def start(self, model=None):
        """Pick `current` = the active namespace and the model it needs; returns the model to run.

        A given `model` is kept when it is the namespace's model_version (or the
        namespace names none); otherwise the namespace's checkpoint is loaded.
        """
        # Redis may still be starting (compose, k8s): wait for it as the writer would.
        self.current = await _retrying(lambda: namespaces.active_namespace(self.redis), "reading galleryrank:active")
        meta = await _retrying(lambda: namespaces.read_meta(self.redis, self.current), "reading namespace meta")
        wanted = meta.get("model_version")
        _check_explicit_checkpoint(self.settings, self.current, meta)
        if model is None or (wanted and model.model_version != wanted):
            if wanted:
                loaded = await self._load(meta)
                model = loaded or model
            if model is None:
                model = await asyncio.to_thread(load_namespace_model, self.settings, self.settings.checkpoint)
        if not wanted:  # describe the namespace the live consumer starts in (galleryrank namespaces)
            await namespaces.describe(self.redis, self.current, model.model_version, self.settings.checkpoint)
        log.info("following active namespace %s with model %s", self.current, model.model_version)
        return model

    def scorer_kwargs(self) -> dict:
        return {"namespace": self.namespace, "on_assigned": self.on_assigned, "on_tick": self.on_tick}

    async def namespace(self) -> str:
        return self.current

    async def _load(self, meta: dict[str, str]):
        checkpoint = meta.get("checkpoint", "")
        try:
            model = await asyncio.to_thread(load_namespace_model, self.settings, checkpoint)
        except Exception:
            log.error(
                "cannot load checkpoint %r (model %s) of namespace %s; keeping the current model",
                checkpoint,
                meta.get("model_version"),
                self.current,
                exc_info=True,
            )
            return None
        if meta.get("model_version") and model.model_version != meta["model_version"]:
            log.error(
                "checkpoint %r is model %s, namespace meta says %s",
                checkpoint,
                model.model_version,
                meta["model_version"],
            )
        return model

    # --- partitions taken over ---------------------------------------------------
    async def on_assigned(self, consumer, assigned: set[TopicPartition]) -> None:
        if not assigned:
            return
        fields = [_field(tp) for tp in sorted(assigned)]
        # Nothing of these partitions may be processed before this check: wait for Redis here
        # (it is needed for every write anyway).
        markers = await _retrying(
            lambda: self.redis.hmget(markers_key(self.group_id), fields), "reading hand-over markers"
        )
        meta = await _retrying(lambda: namespaces.read_meta(self.redis, self.current), "reading namespace meta")
        ends = namespaces.end_offsets(meta)
        for tp, marker in zip(sorted(assigned), markers):
            owner = marker.decode() if marker else None
            if owner == self.current:
                continue
            if owner is None:
                self._pending[tp] = None  # first start: the committed offset is taken as current's
                continue
            committed = await consumer.committed(tp)
            end = ends.get(tp.partition)
            if committed is None or end is None:
                if end is None:
                    log.warning(
                        "partition %d was last written into %s; %s records no end offset for it, "
                        "so events before offset %s that only %s has may be missing",
                        tp.partition,
                        owner,
                        self.current,
                        committed,
                        owner,
                    )
                self._pending[tp] = None
                continue
            target = min(committed, end)
            if target < committed:
                consumer.seek(tp, target)
                log.info(
                    "partition %d: %s -> %s, reprocessing from %d (was %d)",
                    tp.partition,
                    owner,
                    self.current,
                    target,
                    committed,
                )
            self._pending[tp] = target

    async def _settle(self, scorer) -> None:
        """Commit the hand-over offsets of taken-over partitions, then flip their markers."""
        pending, self._pending = self._pending, {}
        assigned = scorer.consumer.assignment()
        for tp, target in pending.items():
            if tp not in assigned:
                continue  # revoked meanwhile: the next owner redoes the check
            try:
                if target is not None:
                    await scorer.consumer.commit({tp: target})
            except KafkaError as exc:
                log.warning("hand-over commit of partition %d failed (%s); the next owner redoes it", tp.partition, exc)
                continue
            try:
                await self.redis.hset(markers_key(self.group_id), _field(tp), self.current)
            except _REDIS_DOWN:
                self._pending[tp] = None  # committed already; only the marker is left to write

    # --- the switch ----------------------------------------------------------------
    async def on_tick(self, scorer) -> None:
        """Runs in the scorer's main loop: a Redis error here must not stop the scorer."""
        try:
            if self._pending:
                await self._settle(scorer)
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + CHECK_INTERVAL_S
            active = await namespaces.active_namespace(self.redis)
            if active == self.current:
                return
            meta = await namespaces.read_meta(self.redis, active)
        except _REDIS_DOWN as exc:
            log.warning("hand-over check failed (%s); trying again on the next turn", exc)
            return
        await self.switch(scorer, active, meta)

    async def switch(self, scorer, new: str, meta: dict[str, str]) -> None:
        old = self.current
        wanted = meta.get("model_version")
        model = None
        if wanted and wanted != scorer.model.model_version:
            model = await self._load(meta)  # before draining: the stream keeps flowing meanwhile
        consumer = scorer.consumer
        assigned = set(consumer.assignment())
        # In-flight events finish into `old` with the old model; then P = committed position.
        await scorer.drain_and_commit(assigned)
        positions: dict[TopicPartition, int | None] = {}
        for tp in assigned:
            positions[tp] = await consumer.committed(tp)
            if positions[tp] is not None:
                await _retrying(
                    lambda tp=tp: namespaces.raise_end_offset(self.redis, old, tp.partition, positions[tp]),
                    "recording where the old namespace is complete",
                )
        if model is not None:
            await scorer.batcher.stop()
            scorer.batcher = MicroBatcher(
                model.score, model.areas, self.settings.batch_size, self.settings.max_batch_delay_ms / 1000
            )
            scorer.batcher.start()
            scorer.model = model
        self.current = new
        self.switches += 1
        ends = namespaces.end_offsets(meta)
        for tp, position in positions.items():
            end = ends.get(tp.partition)
            target = position if end is None or position is None else min(position, end)
            if end is None:
                log.warning(
                    "namespace %s records no end offset for partition %d: nothing before %s is reprocessed",
                    new,
                    tp.partition,
                    position,
                )
            try:
                if target is not None:
                    consumer.seek(tp, target)
                    await consumer.commit({tp: target})
            except (IllegalStateError, KafkaError) as exc:
                log.warning("hand-over of partition %d failed (%s); its next owner redoes it", tp.partition, exc)
                continue
            await _retrying(
                lambda tp=tp: self.redis.hset(markers_key(self.group_id), _field(tp), new), "writing a hand-over marker"
            )
            if target is not None and position is not None and target < position:
                log.info(
                    "partition %d: reprocessing %d events from %d into %s", tp.partition, position - target, target, new
                )
        log.info("now writing into namespace %s (was %s) with model %s", new, old, scorer.model.model_version)
