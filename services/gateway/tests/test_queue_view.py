"""What a queued run says about why it waits, from its position and what serves its category."""

from __future__ import annotations

import pytest

from runmesh.core.run_policy import Placement, Resources
from runmesh.gateway.placement import choose_pool, held_reason
from runmesh.gateway.queue_view import queue_reason
from runmesh.gateway.worker_presence import Capacity, Offer


@pytest.mark.parametrize(
    ("position", "capacity", "reason"),
    [
        (
            3,
            Capacity(),
            "no worker serves category smart_tool: start one "
            "(`runmesh worker --category smart_tool`)",
        ),
        (
            2,
            Capacity(workers=1, slots=8, busy=5, pools=["default"]),
            "waiting for a worker of smart_tool to take it (3 of 8 slots free)",
        ),
        (
            4,
            Capacity(workers=1, slots=8, busy=5, pools=["default"]),
            "position 4 in the smart_tool queue: 5 of 8 slots busy on 1 worker",
        ),
        (
            12,
            Capacity(workers=2, slots=16, busy=16, pools=["default", "gpu"]),
            "position 12 in the smart_tool queue: 16 of 16 slots busy on 2 workers",
        ),
    ],
)
def test_the_reason_names_what_the_run_waits_for(
    position: int, capacity: Capacity, reason: str
) -> None:
    assert queue_reason("smart_tool", "default", position, capacity) == reason


def test_busy_over_slots_counts_no_free_slot() -> None:
    # Announced busy counts are a moment old; a stale one may exceed the slots.
    assert Capacity(workers=1, slots=2, busy=3).free == 0


def test_another_pools_queue_is_named() -> None:
    assert queue_reason("neural_net", "gpu", 1, Capacity()) == (
        "no worker serves category neural_net in pool gpu: start one "
        "(`runmesh worker --category neural_net --pool gpu`)"
    )
    busy = Capacity(workers=1, slots=1, busy=1, pools=["gpu"])
    assert queue_reason("neural_net", "gpu", 2, busy) == (
        "position 2 in the neural_net (pool gpu) queue: 1 of 1 slots busy on 1 worker"
    )


CPU, GPU = Offer(frozenset()), Offer(frozenset({"gpu", "cuda12"}), gpus=2, memory_mb=8192)


@pytest.mark.parametrize(
    ("placement", "live", "pool"),
    [
        (None, {}, "default"),  # no placement: the default pool's topic, live or not
        (Placement(labels=["gpu"]), {"default": [CPU]}, None),
        (Placement(labels=["gpu"]), {"default": [CPU], "gpu": [GPU]}, "gpu"),
        # Any pool: `default` first, then by name.
        (Placement(labels=["gpu"]), {"b": [GPU], "a": [GPU], "default": [GPU]}, "default"),
        (Placement(labels=["gpu"]), {"b": [GPU], "a": [GPU]}, "a"),
        # Pools in order of preference (LOST ENVS): the first one live.
        (Placement(pools=["big", "small"]), {"small": [CPU], "big": [CPU]}, "big"),
        (Placement(pools=["big", "small"]), {"small": [CPU]}, "small"),
        (Placement(pools=["big"]), {"default": [CPU]}, None),
        # A pool fits only when every one of its live workers has the labels.
        (Placement(labels=["gpu"]), {"mixed": [GPU, CPU]}, None),
        (Placement(pools=["mixed"], labels=["cuda12"]), {"mixed": [GPU, GPU]}, "mixed"),
    ],
)
def test_a_run_goes_to_the_first_pool_that_fits(
    placement: Placement | None, live: dict[str, list[Offer]], pool: str | None
) -> None:
    assert choose_pool(placement, live) == pool


@pytest.mark.parametrize(
    ("resources", "live", "pool"),
    [
        (Resources(gpus=2), {"default": [CPU], "gpu": [GPU]}, "gpu"),
        (Resources(gpus=3), {"default": [CPU], "gpu": [GPU]}, None),
        (Resources(memory_mb=8192), {"gpu": [GPU]}, "gpu"),
        (Resources(memory_mb=8193), {"gpu": [GPU]}, None),
        # Every worker of the pool must offer as much.
        (Resources(gpus=1), {"mixed": [GPU, CPU]}, None),
        # Run alone: any worker will do, nothing to count.
        (Resources(lock_all=True), {}, "default"),
    ],
)
def test_a_run_asking_for_gpus_or_memory_goes_where_every_worker_offers_them(
    resources: Resources, live: dict[str, list[Offer]], pool: str | None
) -> None:
    assert choose_pool(None, live, resources) == pool


def test_a_held_run_says_what_it_waits_for() -> None:
    placement = Placement(pools=["a", "b"], labels=["gpu", "cuda12"])
    assert held_reason("neural_net", placement, None) == (
        "waiting for a worker of neural_net in pool a or b with labels gpu, cuda12 (none is live)"
    )
    assert held_reason("neural_net", Placement(labels=["gpu"]), None) == (
        "waiting for a worker of neural_net with labels gpu (none is live)"
    )
    assert held_reason("train", None, Resources(gpus=1, memory_mb=4096)) == (
        "waiting for a worker of train offering 1 GPU and 4096 MiB of memory (none is live)"
    )
