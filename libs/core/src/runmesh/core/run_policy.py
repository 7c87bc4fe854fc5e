"""How a run asks to be run, beyond its action and params (docs/operations.md "Pools and
labels", "Priorities and fair shares", "Resources and exclusive runs"): where it may start,
how urgent it is, what it needs of its worker, and the bounds of its retries. Carried by the
wire request, the REST body, a pipeline step and an action's config.yaml alike."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from runmesh.core.pools import LABEL_PATTERN, POOL_PATTERN

MAX_ATTEMPTS_BOUND: Final = 100
"""The most starts a request may ask for (a worker caps it at its RUNMESH_MAX_ATTEMPTS)."""

RETRY_BACKOFF_BOUND_S: Final = 3600
"""The longest first retry backoff a request may ask for (a worker caps every wait at its
RUNMESH_RETRY_BACKOFF_MAX_S)."""

PRIORITY_MIN: Final = 1
PRIORITY_MAX: Final = 9
DEFAULT_PRIORITY: Final = 5
"""A run's priority: 1 (lowest) to 9 (highest), 5 unless it asks. Among the queued runs of
one pool, a higher priority starts first."""

PoolName = Annotated[str, Field(pattern=POOL_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]


class Placement(BaseModel):
    """Where a run may start (docs/operations.md "Pools and labels"): a pool of workers of
    its category, the first of `pools` that has live workers all carrying `labels`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    pools: list[PoolName] = Field(
        default_factory=list,
        max_length=10,
        description="Pools in order of preference; empty = any pool (`default` first)",
    )
    labels: list[Label] = Field(
        default_factory=list,
        max_length=20,
        description="Labels every worker of the chosen pool must have, e.g. `gpu`",
    )


MAX_GPUS: Final = 1024
MAX_MEMORY_MB: Final = 64 * 1024 * 1024
"""Bounds of what a run may ask for and a worker may offer (64 TiB)."""


class Resources(BaseModel):
    """What a run needs of the worker it runs on (docs/operations.md "Resources and
    exclusive runs"): GPUs and memory out of what the worker offers, or all of it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    gpus: int = Field(
        default=0,
        ge=0,
        le=MAX_GPUS,
        description="GPUs it uses (of its worker's RUNMESH_WORKER_GPUS); its job sees only "
        "those (CUDA_VISIBLE_DEVICES)",
    )
    memory_mb: int = Field(
        default=0,
        ge=0,
        le=MAX_MEMORY_MB,
        description="Memory it uses, in MiB (of its worker's RUNMESH_WORKER_MEMORY_MB): its "
        "job's memory limit, else RUNMESH_JOB_MEMORY_MB",
    )
    lock_all: bool = Field(
        default=False,
        description="Run alone: the worker finishes its other runs first and starts none "
        "beside it (LOST's `lock_all`: training on a whole GPU, all of its memory)",
    )
