"""Replay: rescore a stretch of the topic into a namespace of its own.

A replay is the normal scorer (consumer/stream/scorer.py) with
- its own consumer group (`<group_id>-replay-<ns>`), so the live group's
  offsets are untouched;
- a fixed namespace, so the website (which follows `galleryrank:active`) sees
  nothing until `galleryrank promote`;
- a start and an end offset per partition, fixed before it starts (the plan):
  on assignment each partition is seeked to its start; records at or past the
  end are neither processed nor tracked; it stops when every partition has
  been read up to its end and nothing is in flight.

Start and end points by time follow Kafka's `offsets_for_times` meaning
("the first offset whose record timestamp is >= t"), made exact on any
broker: the broker's answer is only a lower bound that we read forward from.
Tansu needs this (docs/operations.md, "Tansu"; tests/integration/test_replay.py shows it):
- it answers at batch granularity, comparing against its own append time of
  the batch, so a batch that spans t answers the batch's base offset;
- for a time after the last record it answers (offset 0, timestamp -1)
  instead of None; both mean "nothing at or after t".
The end for `now` is the Fetch high watermark at plan time, not
`end_offsets()` (Tansu answers that with the last batch's base offset + 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from .. import times
from ..interfaces import KafkaRecord, RedisClient, ScoringBackend
from ..settings import Settings
from ..state import hotel_index, keys
from ..stream.kafka import make_consumer
from ..stream.priority import subscribed_topics
from ..stream.scorer import GalleryScorer, RunSummary, ScorerControl
from . import namespaces

log = logging.getLogger(__name__)

# How long planning may wait for the broker to report every partition's high
# watermark / the records after a time; a healthy broker answers in one fetch.
PLAN_TIMEOUT_S = 30.0


class ReplayError(RuntimeError):
    pass


def parse_time(text: str | None, *, open_value: str) -> int | None:
    """'earliest' / 'now' (open_value) or None -> None; an ISO-8601 time -> epoch ms (naive = UTC)."""
    if text is None or text.strip().lower() == open_value:
        return None
    ms = times.parse_iso_ms(text)  # the one parser (consumer/times.py)
    if ms is None:
        raise ReplayError(f"not an ISO-8601 time nor {open_value!r}: {text!r}")
    return ms


def ms_to_iso(ms: int | None, open_value: str) -> str:
    if ms is None:
        return open_value
    return times.iso_ms(ms)


@dataclass
class ReplayPlan:
    topic: str
    start: dict[int, int]  # partition -> first offset to apply
    end: dict[int, int]  # partition -> first offset NOT to apply
    from_ms: int | None = None
    to_ms: int | None = None

    @property
    def total(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.end)


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    await consumer.topics()  # refreshes metadata
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise ReplayError(f"topic {topic!r} does not exist or has no partitions")
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def high_watermarks(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], timeout_s: float = PLAN_TIMEOUT_S
) -> dict[TopicPartition, int]:
    """The Fetch high watermark of each partition (needs one fetch per partition)."""
    # Start the fetch near the end: ListOffsets(latest) is a lower bound on
    # Tansu (base offset of the last batch + 1) and exact on Apache Kafka.
    near_end = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(0, near_end[tp] - 1))
    deadline = time.monotonic() + timeout_s
    while True:
        high = {tp: consumer.highwater(tp) for tp in tps}
        if all(h is not None for h in high.values()):
            return high
        if time.monotonic() > deadline:
            raise ReplayError(
                f"no high watermark from the broker for {[tp.partition for tp, h in high.items() if h is None]}"
            )
        await consumer.getmany(timeout_ms=200, max_records=1)


async def first_offsets_at(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    ts_ms: int,
    high: dict[TopicPartition, int],
    timeout_s: float = PLAN_TIMEOUT_S,
) -> dict[TopicPartition, int]:
    """Per partition, the first offset whose record timestamp is >= ts_ms (high watermark if none)."""
    answer = await consumer.offsets_for_times({tp: ts_ms for tp in tps})
    result: dict[TopicPartition, int] = {}
    scan: dict[TopicPartition, int] = {}
    for tp in tps:
        found = answer.get(tp)
        if found is None or found.timestamp < 0:  # Kafka: None; Tansu: (0, -1). Nothing at/after ts.
            result[tp] = high[tp]
        elif found.offset >= high[tp]:
            result[tp] = high[tp]
        else:
            scan[tp] = found.offset  # a lower bound on Tansu (batch granularity): read forward
    if scan:
        consumer.pause(*tps)
        for tp, offset in scan.items():
            consumer.seek(tp, offset)
            consumer.resume(tp)
        deadline = time.monotonic() + timeout_s
        while scan:
            if time.monotonic() > deadline:
                raise ReplayError(f"timed out reading partitions {[tp.partition for tp in scan]} to locate {ts_ms}")
            batch = await consumer.getmany(*scan, timeout_ms=500)
            for tp, records in batch.items():
                if tp not in scan:
                    continue
                hit = next((r.offset for r in records if r.timestamp >= ts_ms), None)
                if hit is None and records and records[-1].offset + 1 >= high[tp]:
                    hit = high[tp]
                if hit is not None:
                    result[tp] = hit
                    del scan[tp]
                    consumer.pause(tp)
        consumer.resume(*tps)
    return result


async def make_plan(settings: Settings, from_ms: int | None, to_ms: int | None, topic: str | None = None) -> ReplayPlan:
    """Start and end offset per partition of `topic` (default: the main topic) for [from, to]
    (None = earliest / now)."""
    topic = topic or settings.topic
    consumer = make_consumer(settings, group_id=None)
    await consumer.start()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        high = await high_watermarks(consumer, tps)
        if from_ms is None:
            begin = await consumer.beginning_offsets(tps)
            start = {tp: begin[tp] for tp in tps}
        else:
            start = await first_offsets_at(consumer, tps, from_ms, high)
        # End = first offset after `to`, i.e. the first record with timestamp >= to + 1 ms.
        end = dict(high) if to_ms is None else await first_offsets_at(consumer, tps, to_ms + 1, high)
    finally:
        await consumer.stop()
    return ReplayPlan(
        topic=topic,
        start={tp.partition: start[tp] for tp in tps},
        end={tp.partition: max(end[tp], start[tp]) for tp in tps},
        from_ms=from_ms,
        to_ms=to_ms,
    )


class ReplayBounds(ScorerControl):
    """The scorer control that keeps a replay inside its plans (one per topic), and its progress."""

    def __init__(self, plan: ReplayPlan, *more: ReplayPlan):
        self.plan = plan  # the main topic's
        self.plans = {p.topic: p for p in (plan, *more)}
        # (topic, partition) -> one past the highest offset handed to the scorer
        self.read_to = {(p.topic, part): start for p in self.plans.values() for part, start in p.start.items()}
        self.beyond = 0  # records fetched at/after the end and dropped

    @property
    def total(self) -> int:
        return sum(p.total for p in self.plans.values())

    async def on_assigned(self, scorer: GalleryScorer, assigned: set[TopicPartition]) -> None:
        # Every assignment (also after a rebalance) starts at the plan's start:
        # redoing applied events is a no-op (per-image fences).
        for tp in assigned:
            plan = self.plans.get(tp.topic)
            if plan is not None and tp.partition in plan.start:
                scorer.seek(tp, plan.start[tp.partition])
            else:  # a partition (or topic) created after the plan: not part of this replay
                scorer.pause(tp)

    def accept(self, scorer: GalleryScorer, record: KafkaRecord) -> bool:
        plan = self.plans.get(record.topic)
        end = plan.end.get(record.partition) if plan is not None else None
        if end is None or record.offset >= end:
            # A fetch returns whole batches: drop what lies past the end and stop fetching there.
            self.beyond += 1
            scorer.pause(TopicPartition(record.topic, record.partition))
            return False
        key = (record.topic, record.partition)
        if record.offset + 1 > self.read_to[key]:
            self.read_to[key] = record.offset + 1
        return True

    def reached_end(self) -> bool:
        return all(self.read_to[(p.topic, part)] >= e for p in self.plans.values() for part, e in p.end.items())

    async def stop_at(self, scorer: GalleryScorer) -> bool:
        # The scorer asks only when nothing is in flight, so everything read is done.
        return self.reached_end()

    def done(self, in_flight: int) -> int:
        read = sum(
            min(self.read_to[(p.topic, part)], e) - p.start[part]
            for p in self.plans.values()
            for part, e in p.end.items()
            if e > p.start[part]
        )
        return max(0, read - in_flight)


@dataclass
class ReplayResult:
    namespace: str
    group_id: str
    model_version: str
    plan: ReplayPlan  # the main topic's
    summary: RunSummary = field(default_factory=RunSummary)
    plans: list[ReplayPlan] = field(default_factory=list)  # every topic's (main, labels, backfill)
    complete: bool = False

    @property
    def total(self) -> int:
        return sum(p.total for p in self.plans) if self.plans else self.plan.total

    @property
    def rate(self) -> float:
        return self.summary.events / self.summary.seconds if self.summary.seconds else 0.0


def replay_group(settings: Settings, namespace: str) -> str:
    return f"{settings.group_id}-replay-{namespace}"


async def _check_target(redis: RedisClient, namespace: str, model_version: str) -> dict[str, str]:
    """Refuse to replay a different model into a namespace that already has galleries.

    Per-image fences would turn the new model's scores into no-ops for every
    image already there: the namespace would silently stay on the old scores.
    """
    meta = await namespaces.read_meta(redis, namespace)
    hotels = await hotel_index.count(redis, namespace)
    existing = meta.get("model_version", "")
    if hotels and existing and existing != model_version:
        raise ReplayError(
            f"namespace {namespace!r} already holds model {existing}; replay model {model_version} "
            "into a new namespace (or drop this one first)"
        )
    return meta


async def run_replay(
    settings: Settings,
    namespace: str,
    model: ScoringBackend,
    redis: RedisClient,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    checkpoint: str | None = None,
    group_id: str | None = None,
    progress: bool = False,
) -> ReplayResult:
    """Replay [from, to] of settings.topic into `namespace` with `model`; records meta; returns the summary."""
    namespaces.validate_name(namespace)
    settings = settings.model_copy(update={"namespace": namespace, "stop_when_idle_s": None})
    group = group_id or replay_group(settings, namespace)
    await _check_target(redis, namespace, model.model_version)
    plan = await make_plan(settings, from_ms, to_ms)
    # The other subscribed topics too (backfill, labels: stream/priority.py), where they exist.
    others = []
    for topic in subscribed_topics(settings):
        if topic != settings.topic:
            try:
                others.append(await make_plan(settings, from_ms, to_ms, topic))
            except ReplayError as exc:
                log.info("replay: %s is not replayed (%s)", topic, exc)
    result = ReplayResult(namespace, group, model.model_version, plan, plans=[plan, *others])
    meta_key_fields = dict(
        status="replaying",
        model_version=model.model_version,
        checkpoint=os.path.abspath(os.path.expanduser(checkpoint)) if checkpoint else "",
        replay_from=ms_to_iso(from_ms, "earliest"),
        replay_to=ms_to_iso(to_ms, "now"),
        topic=plan.topic,
        group=group,
        started_at=namespaces.utc_now(),
        finished_at="",
    )
    await redis.hsetnx(keys.meta_key(namespace), "created_at", namespaces.utc_now())  # type: ignore[misc]  # redis-py: Awaitable[T] | T
    await namespaces.write_meta(redis, namespace, **meta_key_fields)
    for p in result.plans:
        log.info("replay of %s into %s: %d events, start %s, end %s", p.topic, namespace, p.total, p.start, p.end)

    bounds = ReplayBounds(plan, *others)
    started = time.monotonic()
    if bounds.total == 0:
        result.complete = True
    else:
        from ..runtime import build_scorer

        scorer = build_scorer(settings, model, redis, group_id=group, control=bounds)
        reporter = asyncio.create_task(_report(bounds, scorer, namespace)) if progress else None
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if progress else ()
        for sig in signals:  # the CLI: Ctrl-C stops cleanly and the namespace is marked interrupted
            loop.add_signal_handler(sig, scorer.stop)
        try:
            result.summary = await scorer.run()
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
            if reporter:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
            result.complete = bounds.reached_end() and scorer.progress().in_flight == 0
            if not result.complete:
                await namespaces.write_meta(redis, namespace, status="interrupted")
    result.summary.seconds = time.monotonic() - started
    if result.complete:
        for partition, end in plan.end.items():
            await namespaces.raise_end_offset(redis, namespace, partition, end)
        await namespaces.write_meta(
            redis,
            namespace,
            status="complete",
            finished_at=namespaces.utc_now(),
            events=result.summary.events,
            dead_lettered=result.summary.dead_lettered,
        )
    return result


async def _report(bounds: ReplayBounds, scorer: GalleryScorer, namespace: str) -> None:
    """A rich progress bar on stderr: events done of the plan, lag (events left), DLQ count, ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(f"replay -> {namespace}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events  lag {task.fields[lag]}  DLQ {task.fields[dlq]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    total = bounds.total
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("replay", total=total, lag=total, dlq=0)

        def refresh() -> None:
            now = scorer.progress()
            done = bounds.done(now.in_flight)
            bar.update(task, completed=done, lag=total - done, dlq=now.summary.dead_lettered)

        try:
            while True:
                refresh()
                await asyncio.sleep(0.25)
        finally:
            refresh()
