"""Which offsets may be committed, when work finishes out of order.

Downloads and scoring finish in any order, but Kafka stores one position per
partition: "everything before this is done". So per partition we keep the
offsets handed out and not yet durable; the committable position is the
smallest of them (or one past the highest seen when none is pending).

Offsets arrive per partition in fetch order, i.e. ascending, so the pending
ones are kept in a deque in that order (no heap): starting a fetched batch is
one bulk ``set.update`` + ``deque.extend`` (``started_many``), finishing a record
one ``set.discard``, and the position pops finished offsets off the left.
A seek backwards (a rewind) re-sorts the deque once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class _PartitionOffsets:
    pending: set[int] = field(default_factory=set)
    order: deque[int] = field(default_factory=deque)  # pending offsets, ascending (lazy deletion)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None  # last position handed to Kafka


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _PartitionOffsets] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        self.started_many(tp, (offset,))

    def started_many(self, tp: TopicPartition, offsets: list[int] | tuple[int, ...]) -> None:
        """Offsets of one fetched batch of `tp`, ascending (as a fetch returns them)."""
        if not offsets:
            return
        p = self._parts.get(tp)
        if p is None:
            p = self._parts[tp] = _PartitionOffsets()
        first, last = offsets[0], offsets[-1]
        p.pending.update(offsets)
        if p.order and first <= p.order[-1] or last < first:  # a rewind, or out of order: keep it sorted
            p.order = deque(sorted(set(p.order) | set(offsets)))
        else:
            p.order.extend(offsets)
        if p.next_offset is None or last + 1 > p.next_offset:
            p.next_offset = max(offsets) + 1

    def done(self, tp: TopicPartition, offset: int) -> None:
        p = self._parts.get(tp)
        if p is not None:
            p.pending.discard(offset)

    def in_flight(self, tp: TopicPartition | None = None) -> int:
        if tp is not None:
            p = self._parts.get(tp)
            return len(p.pending) if p else 0
        return sum(len(p.pending) for p in self._parts.values())

    def _position(self, p: _PartitionOffsets) -> int | None:
        order, pending = p.order, p.pending
        while order and order[0] not in pending:
            order.popleft()
        return order[0] if order else p.next_offset

    def committable(self, partitions: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """Positions that moved since the last `mark_committed` (only these need a commit)."""
        out = {}
        for tp, p in self._parts.items():
            if partitions is not None and tp not in partitions:
                continue
            pos = self._position(p)
            if pos is not None and pos != p.committed:
                out[tp] = pos
        return out

    def committed_position(self, tp: TopicPartition) -> int | None:
        """The last position committed for `tp` by this consumer (None before the first commit)."""
        p = self._parts.get(tp)
        return p.committed if p else None

    def mark_committed(self, positions: dict[TopicPartition, int]) -> None:
        for tp, pos in positions.items():
            if tp in self._parts:
                self._parts[tp].committed = pos

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Drop revoked partitions: their next owner starts from the committed position."""
        for tp in partitions:
            self._parts.pop(tp, None)
