"""Which of a tenant's limits holds a run back, and what it says (pure rules)."""

from __future__ import annotations

from runmesh.gateway.tenant_limits import TenantLimit, Usage, queue_block, running_block

ALL = TenantLimit("acme", "*", max_running=4, max_queued=None)
EXPORTS = TenantLimit("acme", "export", max_running=1, max_queued=2)


def test_a_limit_over_all_categories_counts_every_category() -> None:
    usage = Usage(under_way={"export": 1, "upload": 2})
    assert running_block([ALL], usage, "upload") is None
    usage.under_way["upload"] = 3
    assert running_block([ALL], usage, "train") == "tenant limit: 4 of 4 runs under way"


def test_a_category_limit_counts_its_category_only() -> None:
    usage = Usage(under_way={"upload": 2}, queued={"upload": 9})
    assert running_block([ALL, EXPORTS], usage, "export") is None
    assert queue_block([ALL, EXPORTS], usage, "export") is None
    usage.under_way["export"], usage.queued["export"] = 1, 2
    assert running_block([ALL, EXPORTS], usage, "export") == (
        "tenant limit: 1 of 1 runs of export under way"
    )
    assert queue_block([ALL, EXPORTS], usage, "export") == (
        "tenant acme has 2 runs of export queued, its limit (2); "
        "submit again once some have started"
    )
    assert queue_block([ALL, EXPORTS], usage, "upload") is None  # no queue limit applies


def test_no_limit_holds_nothing_back() -> None:
    assert running_block([], Usage(under_way={"export": 100}), "export") is None
