"""Which topics the scorer consumes, and live first: a live event never queues behind a backlog.

Every topic the scorer subscribes to is one row of SUBSCRIPTIONS: the Settings field that
names it and its priority. LIVE topics (uploads, editors' labels) are processed as they come;
BACKFILL topics (`galleryrank publish`'s catalogue rows) only in the room live work leaves:

- a backfill event waits at `slot()`, before its download, until it may enter the pipeline,
  so a waiting one holds no fetch, decode or model slot that a live event would queue behind;
- while live is busy (live events in flight, or a live partition with lag: fetched < high
  watermark) at most 1/BUSY_SHARE_DIVISOR of `backfill_max_in_flight` backfill events are
  inside the pipeline (a bounded share: a steady live stream, always "busy", must not starve
  the backfill), so a live event finds at most that many backfill events ahead of it;
- when live is idle the backfill runs with `backfill_max_in_flight` in the pipeline: full
  speed as long as that covers download_concurrency plus the model's batches (the default,
  64, is download_concurrency 32 + one batch of 32);
- while the backfill is at its share the backfill partitions are paused, so fetches bring
  live records and the max_in_flight room stays free for them.

Adding a topic: a Settings field naming it, then one row here, e.g.
    ("labels_topic", LIVE)
and `galleryrank create-topics` creates it (stream/kafka.py reads `subscribed_topics`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Protocol

from aiokafka import TopicPartition

from ..settings import Settings

LIVE = "live"
BACKFILL = "backfill"
# While live is busy the backfill keeps this fraction of its in-flight cap (64 -> 8).
BUSY_SHARE_DIVISOR = 8

# (Settings field naming the topic, priority). An empty or unset field subscribes nothing,
# except backfill_topic, whose default is '<topic>.backfill'.
SUBSCRIPTIONS: tuple[tuple[str, str], ...] = (
    ("topic", LIVE),
    ("labels_topic", LIVE),  # reviewers' labels (issue 24a)
    ("backfill_topic", BACKFILL),
)


def backfill_topic(settings: Settings) -> str:
    """The backfill topic: the setting, else '<topic>.backfill' (so each input topic has its own)."""
    return settings.backfill_topic or f"{settings.topic}.backfill"


def subscribed_topics(settings: Settings) -> dict[str, str]:
    """topic -> priority, in SUBSCRIPTIONS order (the first LIVE one is the main topic)."""
    out: dict[str, str] = {}
    for field, priority in SUBSCRIPTIONS:
        topic = backfill_topic(settings) if field == "backfill_topic" else getattr(settings, field, None)
        if topic and topic not in out:
            out[topic] = priority
    return out


class _Consumer(Protocol):
    def assignment(self) -> set[TopicPartition]: ...
    def paused(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...


class PriorityGate:
    """Admission of events into the scorer's pipeline by their topic's priority (module docstring)."""

    def __init__(self, priorities: dict[str, str], backfill_max_in_flight: int):
        self.priorities = dict(priorities)
        self.backfill_cap = max(1, backfill_max_in_flight)
        self.busy_cap = max(1, self.backfill_cap // BUSY_SHARE_DIVISOR)
        self.live_in_flight = 0
        self.backfill_in_flight = 0  # admitted: past slot(), inside the pipeline
        self.backfill_waiting = 0  # fetched, waiting at slot()
        self.live_lag = False
        self.held: set[TopicPartition] = set()  # backfill partitions this gate paused
        self.holds = 0  # times the backfill was paused for live work (tests, metrics)
        self._fetched: dict[TopicPartition, int] = {}  # one past the last offset fetched
        self._changed = asyncio.Condition()

    @property
    def topics(self) -> list[str]:
        return list(self.priorities)

    def is_backfill(self, topic: str) -> bool:
        return self.priorities.get(topic) == BACKFILL

    def live_busy(self) -> bool:
        return self.live_in_flight > 0 or self.live_lag

    def fetched(self, tp: TopicPartition, next_offset: int) -> None:
        """Records of `tp` up to next_offset were fetched (for the live lag)."""
        self._fetched[tp] = next_offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._fetched.pop(tp, None)
            self.held.discard(tp)

    @asynccontextmanager
    async def slot(self, topic: str) -> AsyncIterator[None]:
        """Hold one pipeline place for an event of `topic` while it is processed."""
        if not self.is_backfill(topic):
            self.live_in_flight += 1
            try:
                yield
            finally:
                self.live_in_flight -= 1
                if self.live_in_flight == 0:
                    await self._notify()
            return
        self.backfill_waiting += 1
        try:
            async with self._changed:
                await self._changed.wait_for(self._backfill_may_start)
                self.backfill_in_flight += 1
        finally:
            self.backfill_waiting -= 1
        try:
            yield
        finally:
            self.backfill_in_flight -= 1
            await self._notify()

    def backfill_room(self) -> int:
        """Backfill events allowed in the pipeline now: the share while live is busy, else the cap."""
        return self.busy_cap if self.live_busy() else self.backfill_cap

    def _backfill_may_start(self) -> bool:
        return self.backfill_in_flight < self.backfill_room()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def steer(self, consumer: _Consumer, *, paused_for_backpressure: bool) -> None:
        """Once per main-loop turn: live lag, and pause or resume the backfill partitions."""
        assigned, paused = consumer.assignment(), consumer.paused()
        lag = False
        for tp in assigned:
            if self.is_backfill(tp.topic) or tp in paused:  # paused: a replay's end, or backpressure
                continue
            high, fetched = consumer.highwater(tp), self._fetched.get(tp)
            if high is not None and fetched is not None and fetched < high:
                lag = True
                break
        was_busy = self.live_busy()
        self.live_lag = lag
        if was_busy and not self.live_busy():
            await self._notify()
        backfill = {tp for tp in assigned if self.is_backfill(tp.topic)}
        self.held &= backfill
        hold = self.backfill_in_flight + self.backfill_waiting >= self.backfill_room()
        if hold:
            unpaused = backfill - paused
            if unpaused:
                consumer.pause(*unpaused)
                self.held |= unpaused
                self.holds += 1
        elif self.held and not paused_for_backpressure:
            consumer.resume(*self.held)
            self.held.clear()
