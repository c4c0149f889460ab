"""Which offsets may be committed, when work finishes out of order.

Downloads and scoring finish in any order, but Kafka stores one position per
partition: "everything before this is done". So per partition we keep the
offsets handed out and not yet durable; the committable position is the
smallest of them (or one past the highest seen when none is pending).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from aiokafka import TopicPartition


@dataclass
class _PartitionOffsets:
    pending: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # min-heap over pending (lazy deletion)
    next_offset: int | None = None  # one past the highest offset seen
    committed: int | None = None  # last position handed to Kafka


class OffsetTracker:
    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _PartitionOffsets] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        p = self._parts.setdefault(tp, _PartitionOffsets())
        p.pending.add(offset)
        heapq.heappush(p.heap, offset)
        if p.next_offset is None or offset + 1 > p.next_offset:
            p.next_offset = offset + 1

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
        while p.heap and p.heap[0] not in p.pending:
            heapq.heappop(p.heap)
        return p.heap[0] if p.heap else p.next_offset

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
