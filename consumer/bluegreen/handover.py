"""How the live consumer follows a promote: it brings the new namespace up to date before the site sees it.

The live consumer (GALLERYRANK_NAMESPACE unset) writes into ONE namespace at
a time, `current`, and keeps, per partition, a marker in Redis saying which
namespace the group's committed offset of that partition belongs to
(hash `galleryrank:handover:<group>`, field `<topic>:<partition>`).

Every namespace records how far it is complete: meta `end:<partition>` = every
event below that offset is applied in it (a replay's end point; the live
consumer raises it when it leaves a namespace and while it catches one up).
A namespace that records end offsets but none for a partition has nothing of
that partition (created, or first assigned, after it was last written): its
end there is 0, so the whole partition is reprocessed into it.

Promote (consumer/bluegreen/namespaces.py `promote`) sets `galleryrank:promoting`
= the target; `galleryrank:active` (what the website reads) stays put. Every
CHECK_INTERVAL_S the main loop (`on_tick`) reads both keys:
1. the write target (`promoting`, else `active`) differs from `current`: load
   its model (the checkpoint in its meta) unless it is the one running; if it
   cannot be read, keep the current model and log an error;
2. finish every in-flight event (they still go into the old namespace) and
   commit: position P per partition (a partition never committed: P = 0, the
   log start); record old `end:<p>` = P;
3. switch model and namespace; per partition seek to T = min(P, new end:<p>),
   commit T, then set the partition's marker to the new namespace;
4. while the target is requested but not active: raise its `end:<p>` to the
   committed offsets, and once every partition of the group is written into it
   and complete to at least the active namespace's `end:<p>`, SET
   `galleryrank:active` (whichever consumer, or the promote command, sees it first).
The old namespace gets no event after step 2, the new one gets all of them
from T on (those the replay applied are no-ops: per-image fences), and the
site switches only at step 4: it never sees a gallery older than the one it
saw before. Events published meanwhile reach the site at the switch.

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
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from ..failures import Backoff, is_environment, retry
from ..interfaces import RedisClient, ScoringBackend
from ..settings import ConfigError, Settings
from ..state.namespace import WriteTarget
from ..stream.scorer import GalleryScorer, ScorerControl
from . import namespaces

log = logging.getLogger(__name__)

# How often the live consumer reads galleryrank:active: one GET per 0.5 s is
# nothing for Redis, and the website sees new events of the promoted namespace
# within about this long after a promote.
CHECK_INTERVAL_S = 0.5


markers_key = namespaces.markers_key


def _main(partitions: set[TopicPartition], topic: str) -> set[TopicPartition]:
    """The main topic's partitions: end offsets (namespaces.end_offsets) are per partition number of
    the main topic. The other subscribed topics (backfill, labels: stream/priority.py) keep their
    committed positions across a switch; a replay into the new namespace covers them."""
    return {tp for tp in partitions if tp.topic == topic}


def _field(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


_T = TypeVar("_T")


async def _retrying(call: Callable[..., Awaitable[_T]], what: str) -> _T:
    """`await call()` until Redis takes it (consumer/failures.py: down, or refusing writes with
    OOM / READONLY / ...), for reads and marker writes that must not be skipped."""
    return await retry(call, what, backoff=Backoff(0.1, 5.0))


def complete_to(ends: dict[int, int], partition: int) -> int | None:
    """Where a namespace with these end offsets is complete for `partition`.

    Its `end:<p>`; 0 when it records ends but none for this partition (it has
    none of its events); None when it records no end at all (promoted with
    --force, or filled by a fixed-namespace deployment): unknown.
    """
    if not ends:
        return None
    return ends.get(partition, 0)


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


class Handover(ScorerControl):
    """The live consumer's scorer control: which namespace it writes, and the switch."""

    def __init__(
        self,
        settings: Settings,
        redis: RedisClient,
        group_id: str | None = None,
        *,
        load_model: Callable[[str | None], ScoringBackend],
        target: WriteTarget | None = None,
    ):
        """``load_model(checkpoint)``: the model a namespace's meta names ("" = the shipped default);
        the composition root passes runtime.load_namespace_model, which also knows the model server.
        ``target``: the namespace the scorer writes into (state/namespace.py), shared with its writer."""
        self.settings = settings
        self.redis = redis
        self.group_id = group_id or settings.group_id
        self.topic = settings.topic
        self._load_model = load_model
        self.target = target or WriteTarget(redis)
        self.switches = 0
        self._pending: dict[TopicPartition, int | None] = {}  # marker to set after committing this offset
        self._next_check = 0.0

    @property
    def current(self) -> str:
        """The namespace this consumer writes into: the write target's, not a copy of it."""
        return self.target.current or ""

    @current.setter
    def current(self, namespace: str) -> None:
        self.target.switch(namespace or None)

    # --- startup ---------------------------------------------------------------
    async def start(self, model: ScoringBackend | None = None) -> ScoringBackend:
        """Pick `current` = the namespace to write (requested, else active) and its model; returns the model.

        A given `model` is kept when it is the namespace's model_version (or the
        namespace names none); otherwise the namespace's checkpoint is loaded.
        """
        # Redis may still be starting (compose, k8s): wait for it as the writer would.
        self.current = await _retrying(lambda: namespaces.write_target(self.redis), "reading galleryrank:active")
        meta = await _retrying(lambda: namespaces.read_meta(self.redis, self.current), "reading namespace meta")
        wanted = meta.get("model_version")
        _check_explicit_checkpoint(self.settings, self.current, meta)
        if model is None or (wanted and model.model_version != wanted):
            if wanted:
                loaded = await self._load(meta)
                model = loaded or model
            if model is None:
                model = await asyncio.to_thread(self._load_model, self.settings.checkpoint)
        if not wanted:  # describe the namespace the live consumer starts in (galleryrank namespaces)
            await namespaces.describe(self.redis, self.current, model.model_version, self.settings.checkpoint)
        log.info("writing into namespace %s with model %s", self.current, model.model_version)
        return model

    async def _load(self, meta: dict[str, str]) -> ScoringBackend | None:
        checkpoint = meta.get("checkpoint", "")
        try:
            model = await asyncio.to_thread(self._load_model, checkpoint)
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
    async def on_assigned(self, scorer: GalleryScorer, assigned: set[TopicPartition]) -> None:
        assigned = _main(assigned, self.topic)
        if not assigned:
            return
        fields = [_field(tp) for tp in sorted(assigned)]
        # Nothing of these partitions may be processed before this check: wait for Redis here
        # (it is needed for every write anyway).
        markers = await _retrying(
            lambda: self.redis.hmget(markers_key(self.group_id), fields),  # type: ignore[arg-type, return-value]  # redis-py: Awaitable[T] | T
            "reading hand-over markers",
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
            committed = await scorer.committed(tp)
            end = complete_to(ends, tp.partition)
            if committed is None:  # never committed: the consumer starts at the log start anyway
                self._pending[tp] = None
                continue
            if end is None:
                log.warning(
                    "partition %d was last written into %s; %s records no end offsets, "
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
                scorer.seek(tp, target)
                log.info(
                    "partition %d: %s -> %s, reprocessing from %d (was %d)",
                    tp.partition,
                    owner,
                    self.current,
                    target,
                    committed,
                )
            self._pending[tp] = target

    async def _settle(self, scorer: GalleryScorer) -> None:
        """Commit the hand-over offsets of taken-over partitions, then flip their markers."""
        pending, self._pending = self._pending, {}
        assigned = scorer.assignment()
        for tp, target in pending.items():
            if tp not in assigned:
                continue  # revoked meanwhile: the next owner redoes the check
            try:
                if target is not None:
                    await scorer.commit_offset(tp, target)
            except KafkaError as exc:
                log.warning("hand-over commit of partition %d failed (%s); the next owner redoes it", tp.partition, exc)
                continue
            try:
                await self.redis.hset(markers_key(self.group_id), _field(tp), self.current)  # type: ignore[misc]  # redis-py: Awaitable[T] | T
            except Exception as exc:
                if not is_environment(exc):
                    raise
                self._pending[tp] = None  # committed already; only the marker is left to write

    # --- the switch ----------------------------------------------------------------
    async def on_tick(self, scorer: GalleryScorer) -> None:
        """Runs in the scorer's main loop: a Redis error here must not stop the scorer."""
        try:
            if self._pending:
                await self._settle(scorer)
            now = time.monotonic()
            if now < self._next_check:
                return
            self._next_check = now + CHECK_INTERVAL_S
            requested = await namespaces.requested_namespace(self.redis)
            active = await namespaces.active_namespace(self.redis)
            target = requested or active
            if target != self.current:
                meta = await namespaces.read_meta(self.redis, target)
                await self.switch(scorer, target, meta)
            if requested == self.current and active != self.current and not self._pending:
                await self._catch_up(scorer)
        except Exception as exc:
            if not is_environment(exc):
                raise
            log.warning("hand-over check failed (%s); trying again on the next turn", exc)

    async def _catch_up(self, scorer: GalleryScorer) -> None:
        """A requested promote: record how far `current` is complete; switch the site once all are ready."""
        for tp in _main(scorer.assignment(), self.topic):
            committed = await scorer.committed(tp)
            if committed is not None:
                await namespaces.raise_end_offset(self.redis, self.current, tp.partition, committed)
        waiting = await namespaces.promote_ready(self.redis, self.group_id, self.topic, self.current)
        if not waiting:
            await namespaces.complete_promote(self.redis, self.current)
            log.info("namespace %s caught up on every partition: it is now the active one", self.current)

    async def switch(self, scorer: GalleryScorer, new: str, meta: dict[str, str]) -> None:
        old = self.current
        wanted = meta.get("model_version")
        model = None
        if wanted and wanted != scorer.progress().model_version:
            model = await self._load(meta)  # before draining: the stream keeps flowing meanwhile
        assigned = scorer.assignment()
        # In-flight events finish into `old` with the old model; then P = committed position.
        await scorer.drain_and_commit(assigned)
        assigned = _main(assigned, self.topic)
        positions: dict[TopicPartition, int] = {}
        for tp in assigned:
            committed = await scorer.committed(tp)
            # Never committed: nothing of this partition went into `old`, which is complete to the log start.
            positions[tp] = 0 if committed is None else committed
            await _retrying(
                lambda tp=tp: namespaces.raise_end_offset(self.redis, old, tp.partition, positions[tp]),
                "recording where the old namespace is complete",
            )
        if model is not None:
            await scorer.swap_model(model)
        scorer.switch_namespace(new)
        self.current = new
        self.switches += 1
        ends = namespaces.end_offsets(meta)
        if not ends and positions:
            log.warning(
                "namespace %s records no end offsets: nothing before the current positions %s is reprocessed",
                new,
                {tp.partition: p for tp, p in sorted(positions.items())},
            )
        for tp, position in positions.items():
            end = complete_to(ends, tp.partition)
            target = position if end is None else min(position, end)
            try:
                scorer.seek(tp, target)
                await scorer.commit_offset(tp, target)
            except (IllegalStateError, KafkaError) as exc:
                log.warning("hand-over of partition %d failed (%s); its next owner redoes it", tp.partition, exc)
                continue
            await _retrying(
                lambda tp=tp: self.redis.hset(markers_key(self.group_id), _field(tp), new),  # type: ignore[arg-type, return-value]  # redis-py: Awaitable[T] | T
                "writing a hand-over marker",
            )
            if target < position:
                log.info(
                    "partition %d: reprocessing %d events from %d into %s", tp.partition, position - target, target, new
                )
        log.info("now writing into namespace %s (was %s) with model %s", new, old, scorer.progress().model_version)
