"""Read every label event from the labels topic, from the beginning to its end when the read starts.

No consumer group and no commit: an export is a read of the whole (small) labels topic, not a
service. Records that do not parse as a label event (the scorer dead-letters them) are counted
by reason and skipped; the main topic is never read.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from ..bluegreen.replay import high_watermarks
from ..settings import Settings
from ..stream.events import InvalidEvent, LabelArea, LabelEvent, LabelRating, parse_event
from ..stream.kafka import make_consumer

READ_TIMEOUT_S = 120.0  # no progress for this long while records remain: the broker is gone


class LabelReadError(RuntimeError):
    pass


@dataclass
class LabelRead:
    events: list[LabelEvent]
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> records not taken
    topic: str = ""
    end_offsets: dict[int, int] = field(default_factory=dict)


async def read_labels(settings: Settings, topic: str | None = None) -> LabelRead:
    topic = topic or settings.labels_topic
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise LabelReadError(f"labels topic {topic!r} does not exist or has no partitions")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        high = await high_watermarks(consumer, tps)
        result = LabelRead([], Counter(), topic, {tp.partition: h for tp, h in high.items()})
        todo = {tp for tp in tps if high[tp] > 0}
        for tp in tps:
            consumer.seek(tp, 0)
        last_progress = time.monotonic()
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500)
            for tp, records in batch.items():
                for r in records:
                    if r.offset >= high[tp]:
                        break
                    ev = parse_event(r.key, r.value)
                    if isinstance(ev, LabelArea | LabelRating):
                        result.events.append(ev)
                    else:
                        result.skipped[ev.reason if isinstance(ev, InvalidEvent) else "not_a_label"] += 1
                if records:
                    last_progress = time.monotonic()
                if await consumer.position(tp) >= high[tp]:
                    todo.discard(tp)
            if todo and time.monotonic() - last_progress > READ_TIMEOUT_S:
                raise LabelReadError(
                    f"no records from partitions {sorted(tp.partition for tp in todo)} in {READ_TIMEOUT_S:g} s"
                )
        return result
    finally:
        await consumer.stop()
