"""A group consumer that hands out at most `capacity` records and commits only finished work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, TopicPartition

from runmesh.core.kafka.clients import wait_for_assignment
from runmesh.core.kafka.offsets import OffsetTracker

log = logging.getLogger(__name__)

Record: TypeAlias = ConsumerRecord[bytes, bytes]


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: TrackedConsumer) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        # Commit what is finished while we still own it; unfinished records are redone by the
        # new owner (at-least-once), so their later completion must not commit anything.
        await self._owner.commit()
        self._owner.tracker.forget(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        self._owner.tracker.forget(assigned)
        self._owner.on_assigned(assigned)


class TrackedConsumer:
    """Manual-commit consumer for work that finishes out of order.

    `fetch()` returns at most as many records as there are free slots; when every slot stays
    busy it pauses all assigned partitions (still polling, so the group keeps the member alive)
    and resumes once `release()` or `finish()` frees a slot. `commit()` commits, per partition,
    the lowest offset still in flight: a crash can repeat finished work, never skip any.
    """

    def __init__(self, consumer: AIOKafkaConsumer, *topics: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._consumer = consumer
        self._topics = topics
        self.capacity = capacity
        self.tracker = OffsetTracker()
        self._slots: set[tuple[TopicPartition, int]] = set()  # records holding a slot
        self._slot_freed = asyncio.Event()
        self._paused = False
        self._held = False
        self._commit_lock = asyncio.Lock()

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The underlying aiokafka consumer."""
        return self._consumer

    @property
    def busy(self) -> int:
        """Records holding a slot (handed out, not finished or released)."""
        return len(self._slots)

    def hold(self, held: bool) -> None:
        """While held, hand out no record, as if every slot were busy (a run needs the
        worker alone); polling goes on, so the group keeps the member."""
        self._held = held
        if not held:
            self._slot_freed.set()

    def _full(self) -> bool:
        return self._held or self.busy >= self.capacity

    async def start(self) -> None:
        """Connect and join the group."""
        await self._consumer.start()
        self._consumer.subscribe(list(self._topics), listener=_Rebalance(self))

    async def wait_for_assignment(self, timeout_s: float) -> bool:
        """Wait until the group gave this member partitions; False if none came in time.

        A new group's first join takes seconds (the broker waits for more members); a worker
        that says it is ready before then would only look idle. With more replicas than
        partitions a member legitimately gets none, hence a bound rather than an error.
        """
        return await wait_for_assignment(self._consumer, timeout_s)

    async def stop(self) -> None:
        """Commit finished work and leave the group."""
        try:
            await self.commit()
        finally:
            await self._consumer.stop()

    def on_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Called after a rebalance; keeps a paused consumer paused on its new partitions."""
        self._paused = False
        if self._full() and assigned:
            self._consumer.pause(*assigned)
            self._paused = True

    async def fetch(self, timeout_ms: int = 500) -> list[Record]:
        """Up to `capacity - busy` records in offset order per partition; may be empty."""
        if self._full():
            self._slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_ms / 1000):
                    await self._slot_freed.wait()
            if self._full():
                # Still full: long runs. Pause (so prefetching stops) but keep polling, or the
                # group would evict a member that looks idle (max.poll.interval).
                self._pause()
                await self._consumer.getmany(timeout_ms=0)
                return []
        # Resuming only after a full wait keeps prefetched records of short runs flowing.
        self._resume()
        free = self.capacity - self.busy
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=free)
        records: list[Record] = []
        for tp, batch in batches.items():
            for record in batch:
                self.tracker.start(tp, record.offset)
                self._slots.add((tp, record.offset))
                records.append(record)
        return records

    def release(self, record: Record) -> None:
        """Free the record's slot while its bookkeeping finishes; it is not committable yet."""
        key = (TopicPartition(record.topic, record.partition), record.offset)
        if key in self._slots:
            self._slots.discard(key)
            self._slot_freed.set()

    def finish(self, record: Record) -> None:
        """Mark a record's work done (successfully or not): it may now be committed."""
        self.release(record)
        self.tracker.finish(TopicPartition(record.topic, record.partition), record.offset)

    def abandon(self, record: Record) -> None:
        """Free a record's slot without marking it done: it stays uncommitted (redelivered)."""
        self.release(record)

    async def commit(self) -> None:
        """Commit every partition's safe position that moved since the last commit."""
        async with self._commit_lock:
            offsets = self.tracker.committable()
            owned = self._consumer.assignment()
            offsets = {tp: pos for tp, pos in offsets.items() if tp in owned}
            if not offsets:
                return
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance is under way: the partitions' next owner redoes the uncommitted
                # records, which is the at-least-once contract. Retried on the next commit.
                log.warning("offset commit failed, will retry: %s", exc)
                return
            self.tracker.mark_committed(offsets)

    def _pause(self) -> None:
        if not self._paused:
            assigned = self._consumer.assignment()
            if assigned:
                self._consumer.pause(*assigned)
            self._paused = True

    def _resume(self) -> None:
        if self._paused:
            paused = self._consumer.paused()
            if paused:
                self._consumer.resume(*paused)
            self._paused = False
