"""`ProgressCoalescer`: at most one update per category per interval, the newest never lost."""

from __future__ import annotations

from runmesh.plugins.progress import ProgressCoalescer, ProgressUpdate


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _update(current: float, category: str = "upload", total: float | None = 10) -> ProgressUpdate:
    return ProgressUpdate(category, current, total)


def _coalescer(interval_s: float = 1.0) -> tuple[ProgressCoalescer, FakeClock]:
    clock = FakeClock()
    return ProgressCoalescer(interval_s, clock=clock), clock


def test_the_first_update_of_a_category_is_sent() -> None:
    coalescer, _ = _coalescer()

    assert coalescer.offer(_update(1)) == _update(1)
    assert coalescer.due() == []
    assert coalescer.drain() == []


def test_the_first_update_is_sent_even_at_clock_zero() -> None:
    clock = FakeClock(now=0.0)
    coalescer = ProgressCoalescer(1.0, clock=clock)

    assert coalescer.offer(_update(1)) == _update(1)
    assert coalescer.offer(_update(2)) is None


def test_updates_within_the_interval_are_held() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    coalescer.offer(_update(1))

    clock.advance(0.5)
    assert coalescer.offer(_update(2)) is None
    clock.advance(0.49)
    assert coalescer.offer(_update(3)) is None
    assert coalescer.due() == []  # still inside the interval


def test_an_update_after_the_interval_is_sent_and_clears_the_held_one() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    coalescer.offer(_update(1))
    clock.advance(0.5)
    coalescer.offer(_update(2))

    clock.advance(0.5)  # exactly the interval counts as passed
    assert coalescer.offer(_update(3)) == _update(3)

    assert coalescer.due() == []
    assert coalescer.drain() == []  # the held 2 is superseded, not sent after 3


def test_only_the_newest_held_value_is_kept() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    coalescer.offer(_update(1))
    for current in range(2, 50):
        clock.advance(0.001)
        assert coalescer.offer(_update(current)) is None

    assert coalescer.drain() == [_update(49)]
    assert coalescer.drain() == []


def test_due_releases_held_values_once_the_interval_passed() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    coalescer.offer(_update(1))
    clock.advance(0.25)  # binary-exact steps: the boundary is hit exactly
    coalescer.offer(_update(2))

    clock.advance(0.5)
    assert coalescer.due() == []
    clock.advance(0.25)
    assert coalescer.due() == [_update(2)]
    assert coalescer.due() == []
    assert coalescer.drain() == []


def test_a_value_released_by_due_counts_as_sent() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    coalescer.offer(_update(1))
    clock.advance(0.5)
    coalescer.offer(_update(2))
    clock.advance(0.5)
    assert coalescer.due() == [_update(2)]  # sent at t+1.0

    clock.advance(0.5)  # only half an interval since due() sent 2
    assert coalescer.offer(_update(3)) is None
    clock.advance(0.5)
    assert coalescer.offer(_update(4)) == _update(4)


def test_drain_returns_every_held_value_regardless_of_timing() -> None:
    coalescer, clock = _coalescer(interval_s=60.0)
    for category in ("upload", "convert", "index"):
        coalescer.offer(_update(1, category))
    clock.advance(0.1)
    coalescer.offer(_update(5, "upload"))
    coalescer.offer(_update(7, "index", total=None))

    drained = coalescer.drain()

    assert sorted(drained, key=lambda u: u.category) == [
        _update(7, "index", total=None),
        _update(5, "upload"),
    ]
    assert coalescer.drain() == []
    assert coalescer.due() == []


def test_categories_are_independent() -> None:
    coalescer, clock = _coalescer(interval_s=1.0)
    assert coalescer.offer(_update(1, "upload")) is not None
    clock.advance(0.5)
    # A new category is sent at once although "upload" sent half an interval ago.
    assert coalescer.offer(_update(1, "convert")) == _update(1, "convert")
    assert coalescer.offer(_update(2, "upload")) is None
    assert coalescer.offer(_update(2, "convert")) is None

    clock.advance(0.5)  # "upload" is due now, "convert" only in another 0.5
    assert coalescer.due() == [_update(2, "upload")]
    clock.advance(0.5)
    assert coalescer.due() == [_update(2, "convert")]


def test_a_zero_interval_sends_everything() -> None:
    coalescer, _ = _coalescer(interval_s=0.0)

    assert [coalescer.offer(_update(i)) for i in range(3)] == [_update(i) for i in range(3)]
    assert coalescer.drain() == []
