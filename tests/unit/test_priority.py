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


async def test_backfill_waits_while_live_is_in_flight_and_is_capped():
    gate = PriorityGate({"live": LIVE, "back": BACKFILL}, backfill_max_in_flight=2)
    log: list[str] = []
    live_done, back_done = asyncio.Event(), asyncio.Event()
    live = asyncio.create_task(_started(gate, "live", log, live_done))
    await asyncio.sleep(0)
    backs = [asyncio.create_task(_started(gate, "back", log, back_done)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert log == ["live"] and gate.backfill_waiting == 3  # nothing of the backfill starts
    live_done.set()
    await live
    await asyncio.sleep(0.01)
    assert log == ["live", "back", "back"] and gate.backfill_in_flight == 2  # the cap
    # a live event arriving now starts at once, and holds the third backfill event back
    second_live = asyncio.Event()
    live2 = asyncio.create_task(_started(gate, "live", log, second_live))
    await asyncio.sleep(0.01)
    assert log[-1] == "live"
    back_done.set()
    await asyncio.sleep(0.01)
    assert log.count("back") == 2  # still held: live in flight
    second_live.set()
    await asyncio.gather(live2, *backs)
    assert log.count("back") == 3 and gate.backfill_in_flight == gate.live_in_flight == 0


async def test_steer_pauses_the_backfill_while_live_is_busy_or_lagging():
    gate = PriorityGate({"live": LIVE, "back": BACKFILL}, backfill_max_in_flight=4)
    consumer = Consumer()
    await gate.steer(consumer, paused_for_backpressure=False)
    assert consumer.paused_set == set()  # live idle: the backfill runs
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
