"""The worker runtime: the whole service loop of a category service."""

from runmesh.common.worker.ledger import AttemptLedger, Claim
from runmesh.common.worker.metrics import WorkerMetrics
from runmesh.common.worker.service import build_registry, main, serve
from runmesh.common.worker.worker import Worker

__all__ = [
    "AttemptLedger",
    "Claim",
    "Worker",
    "WorkerMetrics",
    "build_registry",
    "main",
    "serve",
]
