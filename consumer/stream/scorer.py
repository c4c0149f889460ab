"""The scorer: Kafka records in, ranked galleries in Redis out.

Stages run concurrently, each bounded:

    fetch (main loop) -> per-record task: parse -> download -> decode (worker processes)
        -> MicroBatcher (model thread) -> StateWriter (Redis) -> OffsetTracker -> commit

Every record gets its own task, so downloads overlap and finish in any order;
the OffsetTracker commits per partition only up to the first unfinished
offset. When more than `max_in_flight` records are between fetch and commit
the partitions are paused (aiokafka keeps heart-beating meanwhile). Inside
that cap the big objects have their own bounds: at most
`download_concurrency` image bodies (downloading or waiting for a decoder)
and 2 x `batch_size` decoded images (decoding or waiting for the model), so
memory stays flat whatever the backlog (bench/pipeline_bench.py measures it).
Decode, inference and the per-hotel re-ranking (GalleryStore.apply) run in
threads; the event loop only does I/O and bookkeeping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from .. import metrics
from ..failures import BUG_ATTEMPTS, Backoff, EventFault, Fault, IsolatedFailure, classify
from ..images.decode import DecodedImage, DecodeError
from ..images.decode_path import BatchedDecoder
from ..images.decode_pool import DecodePool
from ..images.download import DownloadError, ImageDownloader
from ..interfaces import KafkaRecord, ScoringBackend
from ..settings import Settings
from ..state.namespace import WriteTarget
from ..state.overrides import AreaChange, HideChange, LabelChange, OverrideChange, PinChange, RatingChange
from ..state.records import Fence, ImageChange
from ..state.writer import HotelStore, StateWriter
from .batcher import MicroBatcher
from .dlq import DeadLetterFailed, DeadLetters
from .dlq_dedupe import DlqMarks
from .events import NOT_PROPERTY as _NOT_PROPERTY
from .events import (
    GalleryPinned,
    GalleryUnpinned,
    ImageDeleted,
    ImageHidden,
    ImageUpserted,
    InvalidEvent,
    LabelArea,
    LabelEvent,
    OverrideEvent,
    parse_event,
)
from .offsets import OffsetTracker
from .priority import PriorityGate, subscribed_topics
from .redelivery import KnownEvents

log = logging.getLogger(__name__)

# Commit at most every 500 ms: frequent enough that a crash replays < 1 s of
# work, rare enough that commits stay a rounding error of broker load.
COMMIT_INTERVAL_S = 0.5
# On revoke, wait this long for in-flight records of the lost partitions;
# what is not done by then is dropped and redone (idempotently) by the new owner.
REVOKE_DRAIN_TIMEOUT_S = 20.0
# Resume paused partitions once in-flight work falls to this share of the cap.
RESUME_FRACTION = 0.5
# The per-event metric series, looked up once: `.labels()` costs ~2.5 us a call.
_APPLIED = metrics.EVENTS.labels(outcome="applied")
_DOWNLOAD_SECONDS = metrics.STAGE_SECONDS.labels(stage="download")
_DECODE_SECONDS = metrics.STAGE_SECONDS.labels(stage="decode")


def override_change(event: OverrideEvent, fence: Fence) -> OverrideChange:
    """The state change of an editor's override event (docs/events.md)."""
    if isinstance(event, GalleryPinned | GalleryUnpinned):
        return PinChange(fence, event.event_id, event.image_ids, replace=isinstance(event, GalleryPinned))
    return HideChange(event.image_id, fence, event.event_id, hidden=isinstance(event, ImageHidden))


def label_change(event: LabelEvent, fence: Fence) -> LabelChange:
    """The state change of a reviewer's label event (docs/labelling.md)."""
    if isinstance(event, LabelArea):
        return AreaChange(event.image_id, fence, event.event_id, event.area, event.reviewer)
    return RatingChange(event.image_id, fence, event.event_id, event.reviewer, event.rating)


@dataclass
class RunSummary:
    events: int = 0
    applied: int = 0
    deleted: int = 0
    overrides: int = 0  # editors' pins, unpins, hides and unhides
    dead_lettered: int = 0
    stale: int = 0
    hotels: set[str] = field(default_factory=set)
    seconds: float = 0.0


@dataclass
class ScorerParts:
    """Every collaborator a scorer runs on, built by the composition root (consumer/runtime.py
    ``build_parts``); the scorer builds none of them."""

    consumer: AIOKafkaConsumer  # subscribed by the scorer; its group is the scorer's group
    producer: AIOKafkaProducer  # the DLQ's
    downloader: ImageDownloader  # HTTP
    store: HotelStore  # hotel state (state/store.py)
    target: WriteTarget  # the namespace written into (state/namespace.py): its one owner
    writer: StateWriter  # writes into `target`
    dlq: DeadLetters
    dlq_marks: DlqMarks  # one DLQ record per source record
    tracker: OffsetTracker
    batcher: MicroBatcher
    decode_pool: DecodePool
    gpu_decoder: BatchedDecoder | None  # batched decode on the GPU; None: the decode pool decodes
    known: KnownEvents  # a re-published event_id is not downloaded again (stream/redelivery.py)


@dataclass
class Progress:
    """What others read of a running scorer (health, replay, benchmarks, tests): a snapshot."""

    summary: RunSummary
    in_flight: int  # records between fetch and commit
    assigned: frozenset[TopicPartition]
    paused: frozenset[TopicPartition]
    pause_count: int  # times partitions were paused for backpressure
    queued_for_model: int
    ready: bool  # partitions assigned at least once
    last_loop_at: float  # time.monotonic() of the main loop's last turn
    model_version: str  # of the model scoring now (swap_model changes it)
    writes_pending: int  # changes waiting in the state writer
    backfill_holds: int  # times the backfill was paused for live work (stream/priority.py)


class ScorerControl:
    """How a replay (bluegreen/replay.py) or the hand-over (bluegreen/handover.py) steers a scorer.

    The defaults are a plain scorer. Every hook gets the scorer and uses its public
    methods (`assignment`, `pause`, `seek`, `committed`, `commit_offset`,
    `drain_and_commit`, `swap_model`, `switch_namespace`); none replaces its attributes.
    """

    async def on_assigned(self, scorer: GalleryScorer, assigned: set[TopicPartition]) -> None:
        """Partitions were assigned; nothing of them is processed before this returns."""

    def accept(self, scorer: GalleryScorer, record: KafkaRecord) -> bool:
        """False: the record is neither processed nor tracked (a replay's end point)."""
        return True

    async def on_tick(self, scorer: GalleryScorer) -> None:
        """Once per main-loop turn, between fetches, never concurrently with a commit."""

    async def stop_at(self, scorer: GalleryScorer) -> bool:
        """Asked when nothing is in flight and a fetch came back empty: True stops the scorer."""
        return False


class Hooks(ScorerControl):
    """A ScorerControl from plain functions (tests, benchmarks, `until_caught_up`), on top of
    another control (`base`: the hand-over of a live consumer, say) that keeps steering:
    each hook runs the base's first; the scorer stops when either says so."""

    def __init__(
        self,
        *,
        stop_at: Callable[[GalleryScorer], Awaitable[bool]] | None = None,
        on_assigned: Callable[[GalleryScorer, set[TopicPartition]], Awaitable[None]] | None = None,
        base: ScorerControl | None = None,
    ):
        self._stop_at = stop_at
        self._on_assigned = on_assigned
        self.base = base or ScorerControl()

    def over(self, base: ScorerControl) -> Hooks:
        """These hooks on top of `base`."""
        return Hooks(stop_at=self._stop_at, on_assigned=self._on_assigned, base=base)

    async def on_assigned(self, scorer: GalleryScorer, assigned: set[TopicPartition]) -> None:
        await self.base.on_assigned(scorer, assigned)
        if self._on_assigned is not None:
            await self._on_assigned(scorer, assigned)

    def accept(self, scorer: GalleryScorer, record: KafkaRecord) -> bool:
        return self.base.accept(scorer, record)

    async def on_tick(self, scorer: GalleryScorer) -> None:
        await self.base.on_tick(scorer)

    async def stop_at(self, scorer: GalleryScorer) -> bool:
        return await self.base.stop_at(scorer) or (self._stop_at is not None and await self._stop_at(scorer))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, scorer: GalleryScorer):
        self.scorer = scorer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self.scorer.drain_and_commit(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted((tp.topic, tp.partition) for tp in assigned))
        await self.scorer.control.on_assigned(self.scorer, set(assigned))
        self.scorer.ready = True


class GalleryScorer:
    def __init__(
        self,
        settings: Settings,
        model: ScoringBackend,
        parts: ScorerParts,
        *,
        control: ScorerControl | None = None,
    ):
        """Build with `runtime.build_scorer`, which makes every part from the settings.

        One kind of hook: a `control` (replay, hand-over; `Hooks` for plain functions).
        """
        self.settings = settings
        self.model = model
        self.control = control or ScorerControl()
        self.consumer = parts.consumer
        self.producer = parts.producer
        self.downloader = parts.downloader
        self.store = parts.store
        self.target = parts.target
        self.dlq = parts.dlq
        self.dlq_marks = parts.dlq_marks
        self.tracker = parts.tracker
        self.known = parts.known
        self.batcher = parts.batcher
        self.writer = parts.writer
        self.decode_pool = parts.decode_pool
        self.gpu_decoder = parts.gpu_decoder
        # Live topics first, backfill in the room they leave (stream/priority.py).
        self.priority = PriorityGate(subscribed_topics(settings), settings.backfill_max_in_flight)
        # Bounded stages. max_in_flight bounds records (a few hundred bytes each);
        # these bound the big objects: at most download_concurrency image bodies
        # (~0.3-3 MB) and 2 x batch_size decoded images (150 KB at 224 px) exist at
        # once, enough for the model to always find its next full batch waiting.
        # Without them a 512-record backlog parked ~500 bodies in front of the
        # decoders (+900 MB RSS measured by bench/pipeline_bench.py).
        self._fetch_slots = asyncio.Semaphore(settings.download_concurrency)
        self._model_slots = asyncio.Semaphore(2 * settings.batch_size)
        self.summary = RunSummary()
        self.fatal: BaseException | None = None  # why the scorer stopped itself (run() raises it)
        self.ready = False
        self.last_loop_at = time.monotonic()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._paused = False
        self.pause_count = 0  # times partitions were paused for backpressure (tests, benchmark)
        self._stopping = asyncio.Event()
        self._last_commit = 0.0
        self._last_record_at = time.monotonic()

    async def _write_namespace(self) -> str:
        return await self.target.resolve()

    def stop(self) -> None:
        self._stopping.set()
        # A decode in progress is abandoned, not waited for (SIGTERM must not wait for a
        # decode bomb): its record ends cancelled, uncommitted, and is redone after the restart.
        self.decode_pool.close()

    # --- the interface replay and hand-over use -------------------------------
    def assignment(self) -> set[TopicPartition]:
        return set(self.consumer.assignment())

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching these partitions (until a rebalance hands them out again)."""
        self.consumer.pause(*partitions)

    async def committed(self, tp: TopicPartition) -> int | None:
        """The group's committed offset of `tp` (None: never committed); no round trip when this scorer committed it."""
        position = self.tracker.committed_position(tp)
        return position if position is not None else await self.consumer.committed(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch `tp` from `offset` next (on assignment, or after drain_and_commit)."""
        self.consumer.seek(tp, offset)

    async def commit_offset(self, tp: TopicPartition, offset: int) -> None:
        """Commit `offset` for `tp` as is (a hand-over point; no in-flight work of `tp` may be left)."""
        await self.consumer.commit({tp: offset})

    def switch_namespace(self, namespace: str | None) -> None:
        """Write every event processed from now on into `namespace` (None: the active one at each write)."""
        self.target.switch(namespace)

    def progress(self) -> Progress:
        return Progress(
            summary=self.summary,
            in_flight=self.tracker.in_flight(),
            assigned=frozenset(self.consumer.assignment()),
            paused=frozenset(self.consumer.paused()),
            pause_count=self.pause_count,
            queued_for_model=self.batcher.queued(),
            ready=self.ready,
            last_loop_at=self.last_loop_at,
            model_version=self.model.model_version,
            writes_pending=self.writer.pending(),
            backfill_holds=self.priority.holds,
        )

    async def caught_up(self) -> bool:
        """True when every assigned partition is committed up to its high watermark.

        Uses the Fetch high watermark, not `end_offsets()`: Tansu answers the latter
        with the base offset of the last batch + 1 (docs/architecture.md).
        """
        assigned = self.consumer.assignment()
        if not assigned:
            return False
        for tp in assigned:
            high = self.consumer.highwater(tp)
            if high is None:
                return False
            committed = self.tracker.committable({tp}).get(tp)
            if committed is None:
                committed = await self.consumer.committed(tp) or 0
            if committed < high:
                return False
        return True

    async def swap_model(self, model: ScoringBackend) -> None:
        """Score with `model` from now on: call between drain_and_commit and the next fetch."""
        await self.batcher.stop()
        self.batcher = MicroBatcher(
            model.score, model.areas, self.settings.batch_size, self.settings.max_batch_delay_ms / 1000
        )
        self.batcher.start()
        self.model = model

    # --- per record ---------------------------------------------------------
    async def _dead_letter(self, record: KafkaRecord, reason: str, detail: str, event_id: str | None) -> None:
        if await self.dlq_marks.already_sent(record.topic, record.partition, record.offset):
            # A redo after a crash between the DLQ ack and the offset commit.
            log.info("%s[%d]@%d is already in the DLQ", record.topic, record.partition, record.offset)
            self.summary.dead_lettered += 1
            return
        # Retries broker trouble for a bounded time, degrades a record the broker refuses
        # (truncated, then headers only); raises DeadLetterFailed past that (consumer/stream/dlq.py).
        await self.dlq.send(
            record.key,
            record.value,
            reason=reason,
            detail=detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_id=event_id,
        )
        await self.dlq_marks.mark_sent(record.topic, record.partition, record.offset)
        self.summary.dead_lettered += 1

    async def _process(self, record: KafkaRecord) -> None:
        event = parse_event(record.key, record.value)
        if isinstance(event, InvalidEvent):
            await self._dead_letter(record, event.reason, event.detail, event.event_id)
            return
        try:
            fence = Fence.of(record, event.occurred_at, self.settings.max_clock_skew_s)
        except EventFault as exc:  # occurred_at_in_future (consumer/times.py)
            await self._dead_letter(record, exc.reason, exc.detail, event.event_id)
            return
        if isinstance(event, ImageDeleted):
            await self.writer.write(event.hotel_id, ImageChange(event.image_id, fence, event.event_id, deleted=True))
            self.summary.deleted += 1
            self.summary.hotels.add(event.hotel_id)
            metrics.EVENTS.labels(outcome="deleted").inc()
            return
        if isinstance(event, OverrideEvent):  # an editor's decision: no download, no model
            await self.writer.write(event.hotel_id, override_change(event, fence))
            self.summary.overrides += 1
            self.summary.hotels.add(event.hotel_id)
            metrics.EVENTS.labels(outcome="override").inc()
            return
        if isinstance(event, LabelEvent):  # a reviewer's label: no download, no model
            if isinstance(event, LabelArea) and event.area != _NOT_PROPERTY and event.area not in self.model.areas:
                areas = ", ".join(self.model.areas)
                detail = f"area {event.area!r} is not one of the model's ({areas}) nor {_NOT_PROPERTY}"
                await self._dead_letter(record, "unknown_area", detail, event.event_id)
                return
            await self.writer.write(event.hotel_id, label_change(event, fence))
            self.summary.overrides += 1
            self.summary.hotels.add(event.hotel_id)
            metrics.EVENTS.labels(outcome="label").inc()
            return
        if await self.known.applied(await self._write_namespace(), event):
            return  # a re-delivery (counted in summary.stale): the fence would refuse it after the download
        decoded = await self._download_and_decode(record, event)
        if decoded is None:
            return
        try:
            # Live first in the model's queue too (stream/batcher.py): 0 = live, 1 = backfill.
            scores = await self.batcher.score(decoded.pixels, priority=int(self.priority.is_backfill(record.topic)))
        finally:
            self._model_slots.release()
        rec = ImageChange(
            image_id=event.image_id,
            fence=fence,
            event_id=event.event_id,
            url=event.url,
            aesthetic=scores.aesthetic,
            aesthetic_dist=scores.aesthetic_dist,
            area_probs=scores.area_probs,
            embedding=scores.embedding,
            phash=decoded.phash,
            model_version=self.model.model_version,
        )
        await self.writer.write(event.hotel_id, rec)
        self.summary.applied += 1
        self.summary.hotels.add(event.hotel_id)
        _APPLIED.inc()

    async def _download_and_decode(self, record: KafkaRecord, event: ImageUpserted) -> DecodedImage | None:
        """Bytes -> pixels under the stage bounds; None when the event went to the DLQ.

        On success the caller holds one model slot and must release it after scoring.
        """
        try:
            async with self._fetch_slots:  # bodies in memory: downloading or waiting for a decoder
                started = time.perf_counter()
                data = await self.downloader.fetch(event.url)
                _DOWNLOAD_SECONDS.observe(time.perf_counter() - started)
                await self._model_slots.acquire()  # pixels in memory: decoding or waiting for the model
                try:
                    started = time.perf_counter()
                    if self.gpu_decoder is not None:
                        decoded = await self.gpu_decoder.decode(data)
                    else:
                        decoded = await self.decode_pool.decode(data, self.model.input_size)
                    _DECODE_SECONDS.observe(time.perf_counter() - started)
                except BaseException:
                    self._model_slots.release()
                    raise
                del data
        except (DownloadError, DecodeError) as exc:
            await self._dead_letter(record, exc.reason, exc.detail, event.event_id)
            return None
        return decoded

    async def _run_record(self, record: KafkaRecord, tp: TopicPartition) -> None:
        """Process one record under the error model (consumer/failures.py): the environment's
        failures are retried for as long as they last (never committed, never dead-lettered);
        a bug is retried, and dead-lettered as internal_error once it failed BUG_ATTEMPTS times
        (the writer has then also tried its change alone); the event's own faults go to the DLQ."""
        backoff = Backoff()
        bugs = 0
        while True:
            try:
                async with self.priority.slot(record.topic):  # live first (stream/priority.py)
                    await self._process(record)
                break
            except asyncio.CancelledError:
                raise  # not done: the offset stays uncommitted and is redone
            except DeadLetterFailed as exc:  # the DLQ is gone: stop, the offset stays uncommitted
                self._fail(exc)
                return
            except Exception as exc:
                kind = classify(exc)
                where = f"{record.topic}[{record.partition}]@{record.offset}"
                if kind is Fault.ENVIRONMENT:
                    delay = backoff.next()
                    log.warning("%s: %s: %s; retrying in %.2fs", where, type(exc).__name__, str(exc)[:160], delay)
                    await asyncio.sleep(delay)
                    continue
                if kind is Fault.EVENT and isinstance(exc, EventFault):
                    reason, detail = exc.reason, exc.detail
                else:
                    bugs += 1
                    if not isinstance(exc, IsolatedFailure) and bugs < BUG_ATTEMPTS:
                        log.warning("%s: unexpected %s (try %d of %d)", where, type(exc).__name__, bugs, BUG_ATTEMPTS)
                        await backoff.sleep()
                        continue
                    # A bug must not stop the service nor hold the partition forever: this one record goes.
                    log.error("unexpected error on %s, dead-lettered as internal_error", where, exc_info=exc)
                    reason, detail = "internal_error", f"{type(exc).__name__}: {str(exc)[:200]}"
                try:
                    await self._dead_letter(record, reason, detail, None)
                except DeadLetterFailed as dlq_exc:
                    self._fail(dlq_exc)
                    return
                break
        self.tracker.done(tp, record.offset)

    def _fail(self, exc: BaseException) -> None:
        log.error("stopping: %s (the record is redone after the restart)", exc)
        self.fatal = exc
        self.stop()

    def _spawn_batch(self, tp: TopicPartition, records: list[KafkaRecord]) -> None:
        """Start one fetched batch of `tp`: the bookkeeping once per batch, then one task per record."""
        self.priority.fetched(tp, records[-1].offset + 1)
        accept = self.control.accept
        records = [r for r in records if accept(self, r)]
        if not records:
            return
        self.tracker.started_many(tp, [r.offset for r in records])
        bucket = self._tasks.setdefault(tp, set())
        discard, run, create_task = bucket.discard, self._run_record, asyncio.get_running_loop().create_task
        for record in records:
            task = create_task(run(record, tp))
            bucket.add(task)
            task.add_done_callback(discard)
        self.summary.events += len(records)
        self._last_record_at = time.monotonic()

    # --- offsets ------------------------------------------------------------
    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        positions = self.tracker.committable(partitions)
        if not positions:
            return
        started = time.perf_counter()
        try:
            await self.consumer.commit(positions)
        except (CommitFailedError, KafkaError) as exc:
            # Lost the partition in a rebalance: the new owner redoes the work.
            log.warning("commit failed (%s); the records will be redone idempotently", exc)
            return
        self.tracker.mark_committed(positions)
        metrics.STAGE_SECONDS.labels(stage="commit").observe(time.perf_counter() - started)
        metrics.LAST_COMMIT.set(time.time())

    async def drain_and_commit(self, partitions: set[TopicPartition]) -> None:
        """Finish (or give up on) in-flight work of `partitions`, commit what is durable."""
        tasks = [t for tp in partitions for t in self._tasks.get(tp, ())]
        if tasks:
            self.writer.flush()  # their changes need not wait for the coalescing window
            done, pending = await asyncio.wait(tasks, timeout=REVOKE_DRAIN_TIMEOUT_S)
            for t in pending:
                t.cancel()
            if pending:
                log.warning("dropped %d unfinished records on revoke; the new owner redoes them", len(pending))
        await self.commit(partitions)
        self.tracker.forget(partitions)
        for tp in partitions:
            self._tasks.pop(tp, None)
        # Their hotels are the next owner's to write: drop our copies (Redis has everything).
        self.store.forget((tp.topic, tp.partition) for tp in partitions)
        self.priority.forget(partitions)

    # --- backpressure -------------------------------------------------------
    def _apply_backpressure(self) -> None:
        in_flight = self.tracker.in_flight()
        metrics.IN_FLIGHT.set(in_flight)
        cap = self.settings.max_in_flight
        assigned = self.consumer.assignment()
        if in_flight >= cap:
            self._paused = True
        elif self._paused and in_flight <= cap * RESUME_FRACTION:
            self._paused = False
            self.consumer.resume(*self.consumer.paused())
        if self._paused:
            # Also partitions assigned since the pause (a rebalance hands out
            # unpaused ones): otherwise they would keep fetching past the cap.
            unpaused = assigned - self.consumer.paused()
            if unpaused:
                self.consumer.pause(*unpaused)
                self.pause_count += 1
            # Nothing new is fetched while paused, so nothing more will join the writer's
            # coalescing windows: waiting them out would only hold the cap (a backlog ran
            # at max_in_flight / write_coalesce_ms events/s, bench/software_ceiling.py).
            self.writer.flush()
        metrics.PAUSED_PARTITIONS.set(len(self.consumer.paused()))

    async def _update_lag(self) -> None:
        """Lag per assigned partition = Fetch high watermark - our commit position.

        For every assigned partition on each commit tick, not only those whose
        commit moved: a stuck partition must show a growing lag, and one that
        never had a record here shows 0 rather than nothing.
        """
        for tp in self.consumer.assignment():
            if tp.topic != self.settings.topic:
                continue  # the gauge is the live topic's (alerts); a backfill's lag is expected
            high = self.consumer.highwater(tp)
            if high is None:
                continue
            position = self.tracker.committed_position(tp)
            if position is None:  # nothing fetched from it yet: committed == fetch position
                try:
                    position = await asyncio.wait_for(self.consumer.position(tp), 1.0)
                except (TimeoutError, KafkaError, AssertionError):
                    continue  # mid-rebalance; next tick
            metrics.CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, high - position))

    # --- lifecycle ----------------------------------------------------------
    async def _idle_done(self) -> bool:
        if self.tracker.in_flight():
            return False
        if await self.control.stop_at(self):
            return True
        idle = self.settings.stop_when_idle_s
        return idle is not None and time.monotonic() - self._last_record_at >= idle

    async def run(self) -> RunSummary:
        started = time.monotonic()
        await self.producer.start()
        await self.downloader.__aenter__()
        # Every topic of stream/priority.py's SUBSCRIPTIONS (live, labels, backfill).
        self.consumer.subscribe(self.priority.topics, listener=_Rebalance(self))
        await self.consumer.start()
        self.batcher.start()
        if self.gpu_decoder is not None:
            self.gpu_decoder.start()
        self.writer.start()
        try:
            while not self._stopping.is_set():
                self.last_loop_at = time.monotonic()
                self._apply_backpressure()
                await self.priority.steer(self.consumer, paused_for_backpressure=self._paused)
                room = max(1, self.settings.max_in_flight - self.tracker.in_flight())
                batches = await self.consumer.getmany(timeout_ms=200, max_records=min(room, 500))
                for tp, records in batches.items():
                    self._spawn_batch(tp, records)
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
                    await self.commit()
                    await self._update_lag()
                    self._last_commit = time.monotonic()
                await self.control.on_tick(self)
                if not batches and await self._idle_done():
                    break
            await self.drain_and_commit(set(self._tasks))
        finally:
            self.summary.stale = self.writer.totals.stale + self.known.skipped
            await self._shutdown()
        self.summary.seconds = time.monotonic() - started
        if self.fatal is not None:
            raise self.fatal
        return self.summary

    async def _shutdown(self) -> None:
        for tasks in self._tasks.values():
            for t in list(tasks):
                t.cancel()
        await self.batcher.stop()
        if self.gpu_decoder is not None:
            await self.gpu_decoder.stop()
        await self.writer.stop()
        await self.consumer.stop()
        await self.producer.stop()
        await self.downloader.__aexit__(None, None, None)
        self.decode_pool.close()
