"""Live first (stream/priority.py): the subscription list and the gate, with a stand-in consumer."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from galleryrank.consumer.settings import Settings
from galleryrank.consumer.stream.priority import BACKFILL, LIVE, PriorityGate, backfill_topic, subscribed_topics

LIVE_TP, BACK_TP = TopicPartition("live", 0), TopicPartition("back", 0)


class Consumer:
    def __init__(self):
        self.assigned = {LIVE_TP, BACK_TP}
        self.paused_set: set[TopicPartition] = set()
        self.high: dict[TopicPartition, int] = {}

    def assignment(self):
        return set(self.assigned)

    def paused(self):
        return set(self.paused_set)

    def pause(self, *tps):
        self.paused_set |= set(tps)

    def resume(self, *tps):
        self.paused_set -= set(tps)

    def highwater(self, tp):
        return self.high.get(tp)


def test_subscriptions_follow_the_settings():
    s = Settings(topic="t1", labels_topic="t1.labels")
    assert backfill_topic(s) == "t1.backfill"
    assert subscribed_topics(s) == {"t1": LIVE, "t1.labels": LIVE, "t1.backfill": BACKFILL}
    assert backfill_topic(Settings()) == "hotel-images.backfill"
    assert subscribed_topics(Settings(topic="t", backfill_topic="bulk"))["bulk"] == BACKFILL


async def _started(gate: PriorityGate, topic: str, log: list[str], release: asyncio.Event) -> None:
    async with gate.slot(topic):
        log.append(topic)
        await release.wait()


async def test_backfill_gets_a_bounded_share_while_live_is_in_flight():
    gate = PriorityGate({"live": LIVE, "back": BACKFILL}, backfill_max_in_flight=16)
    assert gate.busy_cap == 2
    log: list[str] = []
    live_done, back_done = asyncio.Event(), asyncio.Event()
    live = asyncio.create_task(_started(gate, "live", log, live_done))
    await asyncio.sleep(0)
    backs = [asyncio.create_task(_started(gate, "back", log, back_done)) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert log == ["live", "back", "back"] and gate.backfill_waiting == 3  # the share while live is busy
    live_done.set()
    await live
    await asyncio.sleep(0.01)
    assert log.count("back") == 5 and gate.backfill_in_flight == 5  # live idle: up to the cap
    # a live event arriving now starts at once; no more backfill starts until it is under the share
    second_live = asyncio.Event()
    live2 = asyncio.create_task(_started(gate, "live", log, second_live))
    more = [asyncio.create_task(_started(gate, "back", log, back_done)) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert log[-1] == "live" and log.count("back") == 5
    back_done.set()
    await asyncio.gather(*backs)
    await asyncio.sleep(0.01)
    assert log.count("back") == 7  # the first five ended: the next two fit the share
    second_live.set()
    await asyncio.gather(live2, *more)
    assert gate.backfill_in_flight == gate.live_in_flight == 0


def test_the_cap_caps_when_live_is_idle():
    gate = PriorityGate({"live": LIVE, "back": BACKFILL}, backfill_max_in_flight=3)
    assert gate.backfill_room() == 3
    gate.live_in_flight = 1
    assert gate.backfill_room() == 1


async def test_steer_pauses_the_backfill_at_its_share_while_live_is_busy_or_lagging():
    gate = PriorityGate({"live": LIVE, "back": BACKFILL}, backfill_max_in_flight=16)
    consumer = Consumer()
    gate.backfill_in_flight = 2  # at the busy share (2), under the idle cap (16)
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == set()  # live idle: the backfill fetches on
    consumer.high[LIVE_TP] = 10
    gate.fetched(LIVE_TP, 7)  # live has lag: 3 records not fetched yet
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == {BACK_TP} and gate.live_busy()
    gate.fetched(LIVE_TP, 10)
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == set()
    # a live partition paused by someone else (a replay's end) does not count as lag
    consumer.high[LIVE_TP] = 20
    consumer.pause(LIVE_TP)
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == {LIVE_TP}
    # the gate only resumes what it paused, and not while the scorer holds everything paused
    consumer.resume(LIVE_TP)
    await gate.steer(consumer, paused_for_backpressure=False)
    assert BACK_TP in consumer.paused_set
    gate.fetched(LIVE_TP, 20)
    await gate.steer(consumer, paused_for_backpressure=True)
    assert BACK_TP in consumer.paused_set
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == set()
