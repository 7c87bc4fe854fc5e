"""A pool's window: how many runs it may have under way before the rest wait in the gateway."""

from __future__ import annotations

from runmesh.gateway.admission import Window, window_of


def test_a_pool_admits_until_its_window_is_full() -> None:
    window = Window(workers=1, slots=3, under_way=4, per_slot=2.0)
    assert window.size == 6
    assert window.admits()
    window.take()
    window.take()
    assert window.under_way == 6 and not window.admits()


def test_a_fraction_of_a_slot_rounds_up() -> None:
    assert Window(workers=1, slots=3, under_way=0, per_slot=1.5).size == 5


def test_a_pool_without_live_workers_takes_nothing() -> None:
    # Its runs wait in the gateway until a worker announces itself.
    found: dict[tuple[str, str], Window] = {}
    window = window_of(found, "export", "default", 2.0)
    assert found == {("export", "default"): window}
    assert window.size == 0 and not window.admits()
