"""Which offsets are safe to commit while records finish out of order (pure logic)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from aiokafka.structs import TopicPartition


class _PartitionOffsets:
    __slots__ = ("committed", "in_order", "unfinished")

    def __init__(self) -> None:
        self.in_order: deque[int] = deque()  # started offsets, ascending, head unfinished
        self.unfinished: set[int] = set()  # started and not finished
        self.committed: int | None = None  # last commit point handed to `mark_committed`

    def commit_point(self) -> int | None:
        while self.in_order and self.in_order[0] not in self.unfinished:
            self.in_order.popleft()
        if self.in_order:
            return self.in_order[0]
        return None


class OffsetTracker:
    """Tracks in-flight offsets per partition; the commit point is the lowest unfinished one.

    Records of one partition are started in offset order but may finish in any order. Kafka
    commits a single position per partition, so committing past an unfinished record would lose
    it if the worker died: the safe position is the lowest offset still in flight, or one past
    the highest finished offset when nothing is in flight.
    """

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionOffsets] = {}
        self._next: dict[TopicPartition, int] = {}

    def start(self, tp: TopicPartition, offset: int) -> None:
        """Record that `offset` was handed out for processing."""
        state = self._partitions.setdefault(tp, _PartitionOffsets())
        expected = self._next.get(tp)
        if expected is not None and offset < expected:
            raise ValueError(f"offset {offset} of {tp} started out of order (next is {expected})")
        state.in_order.append(offset)
        state.unfinished.add(offset)
        self._next[tp] = offset + 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        """Record that `offset` is finished; unknown partitions (revoked) are ignored."""
        state = self._partitions.get(tp)
        if state is not None:
            state.unfinished.discard(offset)

    def in_flight(self, tp: TopicPartition) -> int:
        """How many records of `tp` are started and not finished."""
        state = self._partitions.get(tp)
        return 0 if state is None else len(state.unfinished)

    def committable(self) -> dict[TopicPartition, int]:
        """Commit positions that moved since the last `mark_committed`."""
        result: dict[TopicPartition, int] = {}
        for tp, state in self._partitions.items():
            point = state.commit_point()
            if point is None:
                point = self._next[tp]
            if point != state.committed:
                result[tp] = point
        return result

    def mark_committed(self, offsets: dict[TopicPartition, int]) -> None:
        """Remember that `offsets` were committed so they are not committed again."""
        for tp, point in offsets.items():
            state = self._partitions.get(tp)
            if state is not None:
                state.committed = point

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop revoked partitions: their records now belong to another consumer."""
        for tp in partitions:
            self._partitions.pop(tp, None)
            self._next.pop(tp, None)
