"""`OffsetTracker`: the commit point is the lowest unfinished offset of each partition."""

from __future__ import annotations

import random

import pytest
from aiokafka.structs import TopicPartition

from runmesh.core.kafka.offsets import OffsetTracker

TP = TopicPartition("runmesh.requests.test", 0)
TP1 = TopicPartition("runmesh.requests.test", 1)


def _started(tp: TopicPartition, offsets: range | list[int]) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.start(tp, offset)
    return tracker


def test_nothing_started_means_nothing_to_commit() -> None:
    tracker = OffsetTracker()

    assert tracker.committable() == {}
    assert tracker.in_flight(TP) == 0


def test_commit_point_is_the_lowest_unfinished_offset() -> None:
    tracker = _started(TP, range(10, 15))

    assert tracker.committable() == {TP: 10}
    tracker.finish(TP, 10)
    tracker.finish(TP, 11)
    assert tracker.committable() == {TP: 12}


def test_out_of_order_finishes_do_not_move_past_an_unfinished_offset() -> None:
    tracker = _started(TP, range(5))

    for offset in (4, 3, 1):
        tracker.finish(TP, offset)
        assert tracker.committable() == {TP: 0}
    tracker.finish(TP, 0)
    assert tracker.committable() == {TP: 2}  # 1 done too; 2 still running
    tracker.finish(TP, 2)
    assert tracker.committable() == {TP: 5}  # 3 and 4 were already done


def test_nothing_in_flight_commits_one_past_the_last_started() -> None:
    tracker = _started(TP, [7, 9, 12])  # gaps (compaction, transaction markers) are fine

    for offset in (12, 7, 9):
        tracker.finish(TP, offset)

    assert tracker.committable() == {TP: 13}
    assert tracker.in_flight(TP) == 0


def test_committable_only_returns_positions_that_moved_since_mark_committed() -> None:
    tracker = _started(TP, range(3))
    tracker.start(TP1, 0)

    first = tracker.committable()
    assert first == {TP: 0, TP1: 0}
    tracker.mark_committed(first)
    assert tracker.committable() == {}

    tracker.finish(TP, 1)  # behind unfinished 0: the point does not move
    assert tracker.committable() == {}

    tracker.finish(TP, 0)
    assert tracker.committable() == {TP: 2}
    tracker.mark_committed({TP: 2})
    assert tracker.committable() == {}

    tracker.finish(TP1, 0)
    assert tracker.committable() == {TP1: 1}


def test_an_uncommitted_position_is_offered_again() -> None:
    tracker = _started(TP, range(2))
    tracker.finish(TP, 0)

    assert tracker.committable() == {TP: 1}
    # The commit failed (rebalance): nothing was marked, so the same position comes back.
    assert tracker.committable() == {TP: 1}


def test_mark_committed_of_an_unknown_partition_is_ignored() -> None:
    tracker = _started(TP, range(2))

    tracker.mark_committed({TP1: 5})

    assert tracker.committable() == {TP: 0}
    assert TP1 not in tracker.committable()


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.start(TP, 0)
    tracker.start(TP1, 100)
    tracker.start(TP1, 101)

    tracker.finish(TP1, 100)

    assert tracker.committable() == {TP: 0, TP1: 101}
    assert tracker.in_flight(TP) == 1
    assert tracker.in_flight(TP1) == 1


def test_forget_drops_partitions() -> None:
    tracker = _started(TP, range(3))
    tracker.start(TP1, 0)

    tracker.forget([TP, TopicPartition("other", 9)])  # unknown partitions are fine

    assert tracker.committable() == {TP1: 0}
    assert tracker.in_flight(TP) == 0
    assert tracker.in_flight(TP1) == 1


def test_finish_of_a_forgotten_partition_is_ignored() -> None:
    tracker = _started(TP, range(3))
    tracker.forget([TP])

    tracker.finish(TP, 0)

    assert tracker.committable() == {}
    assert tracker.in_flight(TP) == 0


def test_a_forgotten_partition_starts_afresh() -> None:
    tracker = _started(TP, range(3))
    tracker.mark_committed(tracker.committable())
    tracker.forget([TP])

    tracker.start(TP, 1)  # reassigned: redelivered from the committed position

    assert tracker.committable() == {TP: 1}  # not suppressed by the old mark_committed
    tracker.finish(TP, 1)
    assert tracker.committable() == {TP: 2}


@pytest.mark.parametrize("offset", [4, 5])
def test_starting_an_offset_not_above_the_last_started_raises(offset: int) -> None:
    tracker = _started(TP, [3, 5])

    with pytest.raises(ValueError, match=rf"offset {offset} of .*test.* started out of order"):
        tracker.start(TP, offset)
    assert tracker.committable() == {TP: 3}  # the bad start changed nothing
    assert tracker.in_flight(TP) == 2


def test_the_next_offset_may_start_once_the_partition_drained() -> None:
    tracker = _started(TP, [3])
    tracker.finish(TP, 3)
    assert tracker.committable() == {TP: 4}

    tracker.start(TP, 4)

    assert tracker.committable() == {TP: 4}
    assert tracker.in_flight(TP) == 1


def test_starting_below_the_last_started_raises_even_when_nothing_is_in_flight() -> None:
    tracker = _started(TP, [3])
    tracker.finish(TP, 3)
    assert tracker.committable() == {TP: 4}  # drains the queue; without this it does raise

    with pytest.raises(ValueError, match="started out of order"):
        tracker.start(TP, 2)
    assert tracker.committable() == {TP: 4}


def test_in_flight_counts_started_and_unfinished() -> None:
    tracker = _started(TP, range(4))
    assert tracker.in_flight(TP) == 4

    tracker.finish(TP, 2)
    assert tracker.in_flight(TP) == 3
    tracker.finish(TP, 0)
    assert tracker.in_flight(TP) == 2
    tracker.finish(TP, 3)
    tracker.finish(TP, 1)
    assert tracker.in_flight(TP) == 0


def test_a_repeated_finish_does_not_corrupt_in_flight() -> None:
    tracker = _started(TP, [0])
    tracker.finish(TP, 0)
    assert tracker.committable() == {TP: 1}

    tracker.finish(TP, 0)  # finished twice (e.g. a retry path reporting again)
    assert tracker.in_flight(TP) == 0

    tracker.start(TP, 1)
    assert tracker.in_flight(TP) == 1


@pytest.mark.parametrize("seed", range(200))
def test_random_finish_order_always_commits_the_lowest_unfinished(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(0, 60)
    tracker = OffsetTracker()
    for offset in range(n + 1):
        tracker.start(TP, offset)
    order = list(range(n + 1))
    rng.shuffle(order)
    unfinished = set(order)
    committed: int | None = None

    for offset in order:
        tracker.finish(TP, offset)
        unfinished.discard(offset)
        expected = min(unfinished) if unfinished else n + 1
        moved = tracker.committable()
        if expected == committed:
            assert moved == {}
        else:
            assert moved == {TP: expected}
        assert tracker.in_flight(TP) == len(unfinished)
        # Commit only now and then, as a real consumer's timer would.
        if rng.random() < 0.5:
            tracker.mark_committed(moved)
            committed = moved.get(TP, committed)

    assert tracker.committable() == ({} if committed == n + 1 else {TP: n + 1})
