"""A pool's window: how many runs it may have under way before the rest wait in the gateway."""

from __future__ import annotations

from runmesh.gateway.admission import Policy, Window, window_of

POLICY = Policy(per_slot=2.0, ahead_s=0.5)


def test_a_pool_admits_until_its_window_is_full() -> None:
    window = Window(workers=1, slots=3, under_way=4, policy=POLICY)
    assert window.size == 6
    assert window.admits()
    window.take()
    window.take()
    assert window.under_way == 6 and not window.admits()


def test_a_fraction_of_a_slot_rounds_up() -> None:
    assert Window(1, 3, 0, Policy(per_slot=1.5, ahead_s=0.5)).size == 5


def test_a_pool_without_live_workers_takes_nothing() -> None:
    # Its runs wait in the gateway until a worker announces itself.
    found: dict[tuple[str, str], Window] = {}
    window = window_of(found, "export", "default", POLICY)
    assert found == {("export", "default"): window}
    assert window.size == 0 and not window.admits()


def test_short_runs_widen_the_window_to_fill_ahead_s() -> None:
    # Runs of 50 ms: 0.5 s ahead is 10 runs per slot, more than 2.
    assert Window(1, 4, 0, POLICY, mean_run_s=0.05).size == 40
    # Long runs: the per-slot floor.
    assert Window(1, 4, 0, POLICY, mean_run_s=30.0).size == 8
    # Runs of no time at all: bounded.
    assert Window(1, 4, 0, POLICY, mean_run_s=0.0).size == 4 * 250
