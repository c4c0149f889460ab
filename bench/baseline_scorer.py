"""Today's scorer loop, frozen as the baseline of bench/software_ceiling.py.

A copy of consumer/stream/scorer.py at commit dccda32 (before issue 17), with
its relative imports made absolute and the class renamed BaselineScorer. Its
downloader (bench/baseline_download.py), state writer (bench/baseline_writer.py)
and store (bench/legacy_store.py, kept by issue 12) are the dccda32 ones too, so
bench/software_ceiling.py compares today's whole path with the current one in the
same run; the batcher, offset tracker, DLQ and Kafka clients are the live ones.
Not used by the service.

The original module docstring follows.

The scorer: Kafka records in, ranked galleries in Redis out.

Stages run concurrently, each bounded:

    fetch (main loop) -> per-record task: parse -> download -> decode (thread pool)
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
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from bench.baseline_download import DownloadError, ImageDownloader
from bench.baseline_writer import StateWriter
from bench.legacy_store import Fence, GalleryStore, ImageState
from galleryrank.consumer import metrics
from galleryrank.consumer.images.decode import DecodeError, decode_image
from galleryrank.consumer.images.gpu_decode import GpuDecoder, gpu_decode_available
from galleryrank.consumer.settings import Settings
from galleryrank.consumer.state.document import ranking_config
from galleryrank.consumer.stream.batcher import MicroBatcher
from galleryrank.consumer.stream.dlq import DeadLetters
from galleryrank.consumer.stream.dlq_dedupe import DlqMarks
from galleryrank.consumer.stream.events import ImageDeleted, InvalidEvent, parse_event
from galleryrank.consumer.stream.kafka import make_consumer, make_producer
from galleryrank.consumer.stream.offsets import OffsetTracker

log = logging.getLogger(__name__)

# Commit at most every 500 ms: frequent enough that a crash replays < 1 s of
# work, rare enough that commits stay a rounding error of broker load.
COMMIT_INTERVAL_S = 0.5
# On revoke, wait this long for in-flight records of the lost partitions;
# what is not done by then is dropped and redone (idempotently) by the new owner.
REVOKE_DRAIN_TIMEOUT_S = 20.0
# Resume paused partitions once in-flight work falls to this share of the cap.
RESUME_FRACTION = 0.5


@dataclass
class RunSummary:
    events: int = 0
    applied: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    stale: int = 0
    hotels: set[str] = field(default_factory=set)
    seconds: float = 0.0


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, scorer: BaselineScorer):
        self.scorer = scorer

    async def on_partitions_revoked(self, revoked):
        await self.scorer.drain_and_commit(set(revoked))

    async def on_partitions_assigned(self, assigned):
        log.info("assigned partitions %s", sorted((tp.topic, tp.partition) for tp in assigned))
        if self.scorer.on_assigned is not None:
            await self.scorer.on_assigned(self.scorer.consumer, set(assigned))
        self.scorer.ready = True


class BaselineScorer:
    def __init__(
        self,
        settings: Settings,
        model,
        redis,
        *,
        group_id: str | None = None,
        namespace: Callable[[], Awaitable[str]] | None = None,
        stop_at: Callable[[BaselineScorer], Awaitable[bool]] | None = None,
        on_assigned: Callable[[object, set[TopicPartition]], Awaitable[None]] | None = None,
        accept: Callable[[object], bool] | None = None,
        on_tick: Callable[[BaselineScorer], Awaitable[None]] | None = None,
    ):
        self.settings = settings
        self.model = model
        self.store = GalleryStore(redis, ranking_config(settings.ranking_strategy, settings.ranking_diversity))
        self._namespace_fn = namespace or self._default_namespace
        self.stop_at = stop_at
        self.on_assigned = on_assigned
        # accept(record) False: the record is not processed nor tracked (a replay's end point).
        self.accept = accept
        # on_tick(scorer): called once per main-loop turn, between fetches, never
        # concurrently with a commit (the live consumer's namespace hand-over).
        self.on_tick = on_tick
        self.consumer = make_consumer(settings, group_id or settings.group_id)
        self.producer = make_producer(settings)
        self.dlq = DeadLetters(self.producer, settings.dlq_topic)
        self.dlq_marks = DlqMarks(redis, group_id or settings.group_id)  # one DLQ record per source record
        self.tracker = OffsetTracker()
        self.batcher = MicroBatcher(model.score, model.areas, settings.batch_size, settings.max_batch_delay_ms / 1000)
        self.writer = StateWriter(self.store, self._namespace_fn)
        workers = settings.decode_workers or os.cpu_count() or 2
        self.decode_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.downloader = ImageDownloader(settings)
        # On a CUDA model JPEGs are decoded in batches by nvJPEG (consumer/images/gpu_decode.py):
        # a CPU thread decodes ~150 1600x1200 JPEGs/s, the GPU scores thousands. Batches
        # are bounded by the fetch slots below: raise download_concurrency on a GPU.
        self.gpu_decoder = (
            GpuDecoder(model.device, model.input_size, settings.max_image_pixels, max_batch=settings.batch_size)
            if gpu_decode_available(str(getattr(model, "device", "cpu")))
            else None
        )
        # Bounded stages. max_in_flight bounds records (a few hundred bytes each);
        # these bound the big objects: at most download_concurrency image bodies
        # (~0.3-3 MB) and 2 x batch_size decoded images (150 KB at 224 px) exist at
        # once, enough for the model to always find its next full batch waiting.
        # Without them a 512-record backlog parked ~500 bodies in front of the
        # decoders (+900 MB RSS measured by bench/pipeline_bench.py).
        self._fetch_slots = asyncio.Semaphore(settings.download_concurrency)
        self._model_slots = asyncio.Semaphore(2 * settings.batch_size)
        self.summary = RunSummary()
        self.ready = False
        self.last_loop_at = time.monotonic()
        self._tasks: dict[TopicPartition, set[asyncio.Task]] = {}
        self._paused = False
        self.pause_count = 0  # times partitions were paused for backpressure (tests, benchmark)
        self._stopping = asyncio.Event()
        self._last_commit = 0.0
        self._last_record_at = time.monotonic()

    async def _default_namespace(self) -> str:
        if self.settings.namespace:
            return self.settings.namespace
        return await self.store.active_namespace()

    def stop(self) -> None:
        self._stopping.set()

    # --- per record ---------------------------------------------------------
    async def _dead_letter(self, record, reason: str, detail: str, event_id: str | None) -> None:
        if await self.dlq_marks.already_sent(record.topic, record.partition, record.offset):
            # A redo after a crash between the DLQ ack and the offset commit.
            log.info("%s[%d]@%d is already in the DLQ", record.topic, record.partition, record.offset)
            self.summary.dead_lettered += 1
            return
        delay = 0.1
        while True:
            try:
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
                return
            except KafkaError as exc:  # broker trouble: the record is not at fault, keep trying
                log.warning("DLQ send failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _process(self, record) -> None:
        event = parse_event(record.key, record.value)
        if isinstance(event, InvalidEvent):
            await self._dead_letter(record, event.reason, event.detail, event.event_id)
            return
        fence = Fence(record.partition, record.offset)
        if isinstance(event, ImageDeleted):
            await self.writer.write(event.hotel_id, ImageState(event.image_id, fence, event.event_id, deleted=True))
            self.summary.deleted += 1
            self.summary.hotels.add(event.hotel_id)
            metrics.EVENTS.labels(outcome="deleted").inc()
            return
        decoded = await self._download_and_decode(record, event)
        if decoded is None:
            return
        try:
            scores = await self.batcher.score(decoded.pixels)
        finally:
            self._model_slots.release()
        rec = ImageState(
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
        metrics.EVENTS.labels(outcome="applied").inc()

    async def _download_and_decode(self, record, event):
        """Bytes -> pixels under the stage bounds; None when the event went to the DLQ.

        On success the caller holds one model slot and must release it after scoring.
        """
        loop = asyncio.get_running_loop()
        try:
            async with self._fetch_slots:  # bodies in memory: downloading or waiting for a decoder
                started = time.perf_counter()
                data = await self.downloader.fetch(event.url)
                metrics.STAGE_SECONDS.labels(stage="download").observe(time.perf_counter() - started)
                await self._model_slots.acquire()  # pixels in memory: decoding or waiting for the model
                try:
                    started = time.perf_counter()
                    if self.gpu_decoder is not None:
                        decoded = await self.gpu_decoder.decode(data)
                    else:
                        decoded = await loop.run_in_executor(
                            self.decode_pool, decode_image, data, self.model.input_size, self.settings.max_image_pixels
                        )
                    metrics.STAGE_SECONDS.labels(stage="decode").observe(time.perf_counter() - started)
                except BaseException:
                    self._model_slots.release()
                    raise
                del data
        except (DownloadError, DecodeError) as exc:
            await self._dead_letter(record, exc.reason, exc.detail, event.event_id)
            return None
        return decoded

    async def _run_record(self, record, tp: TopicPartition) -> None:
        try:
            await self._process(record)
        except asyncio.CancelledError:
            raise  # not done: the offset stays uncommitted and is redone
        except Exception as exc:  # a bug must not stop the service nor lose the event
            log.exception("unexpected error on %s[%d]@%d", record.topic, record.partition, record.offset)
            await self._dead_letter(record, "internal_error", f"{type(exc).__name__}: {str(exc)[:200]}", None)
        self.tracker.done(tp, record.offset)

    def _spawn(self, record) -> None:
        tp = TopicPartition(record.topic, record.partition)
        self.tracker.started(tp, record.offset)
        task = asyncio.create_task(self._run_record(record, tp))
        bucket = self._tasks.setdefault(tp, set())
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        self.summary.events += 1

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
            done, pending = await asyncio.wait(tasks, timeout=REVOKE_DRAIN_TIMEOUT_S)
            for t in pending:
                t.cancel()
            if pending:
                log.warning("dropped %d unfinished records on revoke; the new owner redoes them", len(pending))
        await self.commit(partitions)
        self.tracker.forget(partitions)
        for tp in partitions:
            self._tasks.pop(tp, None)

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
        metrics.PAUSED_PARTITIONS.set(len(self.consumer.paused()))

    async def _update_lag(self) -> None:
        """Lag per assigned partition = Fetch high watermark - our commit position.

        For every assigned partition on each commit tick, not only those whose
        commit moved: a stuck partition must show a growing lag, and one that
        never had a record here shows 0 rather than nothing.
        """
        for tp in self.consumer.assignment():
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
        if self.stop_at is not None and await self.stop_at(self):
            return True
        idle = self.settings.stop_when_idle_s
        return idle is not None and time.monotonic() - self._last_record_at >= idle

    async def run(self) -> RunSummary:
        started = time.monotonic()
        await self.producer.start()
        await self.downloader.__aenter__()
        self.consumer.subscribe([self.settings.topic], listener=_Rebalance(self))
        await self.consumer.start()
        self.batcher.start()
        if self.gpu_decoder is not None:
            self.gpu_decoder.start()
        self.writer.start()
        try:
            while not self._stopping.is_set():
                self.last_loop_at = time.monotonic()
                self._apply_backpressure()
                room = max(1, self.settings.max_in_flight - self.tracker.in_flight())
                batches = await self.consumer.getmany(timeout_ms=200, max_records=min(room, 500))
                for records in batches.values():
                    for record in records:
                        if self.accept is not None and not self.accept(record):
                            continue
                        self._spawn(record)
                        self._last_record_at = time.monotonic()
                if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
                    await self.commit()
                    await self._update_lag()
                    self._last_commit = time.monotonic()
                if self.on_tick is not None:
                    await self.on_tick(self)
                if not batches and await self._idle_done():
                    break
            await self.drain_and_commit(set(self._tasks))
        finally:
            self.summary.stale = self.writer.totals.stale
            await self._shutdown()
        self.summary.seconds = time.monotonic() - started
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
        self.decode_pool.shutdown(wait=False, cancel_futures=True)
