"""The worker runtime: the whole service loop of a category service."""

from runmesh.worker.ledger import AttemptLedger, Claim
from runmesh.worker.metrics import WorkerMetrics
from runmesh.worker.process import build_registry, main, serve
from runmesh.worker.worker import Worker

__all__ = [
    "AttemptLedger",
    "Claim",
    "Worker",
    "WorkerMetrics",
    "build_registry",
    "main",
    "serve",
]
