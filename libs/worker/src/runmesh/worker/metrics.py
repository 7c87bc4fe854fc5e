"""Prometheus metrics of one worker (its own registry, so several workers can share a process)."""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from runmesh.core.categories import metric_category
from runmesh.core.retries import RetryCollector

_M = TypeVar("_M", bound=MetricWrapperBase)


class WorkerMetrics:
    """Runs started, finished and retried, run duration, events published and runs in flight.

    The first label of every metric is the category, and `child()` files it under
    `metric_category()`: a category that is not built in counts as `other` (its name may be a
    tenant's choice). Every other label takes values from a fixed set (states, event types,
    DLQ reasons).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.registry.register(RetryCollector())  # this process's request-level retries
        self.runs_started = Counter(
            "runmesh_runs_started",
            "Run attempts started",
            ["category"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "runmesh_runs_finished",
            "Run attempts finished, by terminal state",
            ["category", "state"],
            registry=self.registry,
        )
        self.run_retries = Counter(
            "runmesh_run_retries",
            "Run attempts that failed retryably and were followed by another",
            ["category"],
            registry=self.registry,
        )
        self.run_duration = Histogram(
            "runmesh_run_duration_seconds",
            "Wall time of run attempts",
            ["category"],
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
            registry=self.registry,
        )
        self.events_published = Counter(
            "runmesh_events_published",
            "Run events published, by type",
            ["category", "type"],
            registry=self.registry,
        )
        self.runs_in_flight = Gauge(
            "runmesh_runs_in_flight",
            "Runs executing on this worker now",
            ["category"],
            registry=self.registry,
        )
        self.dlq_records = Counter(
            "runmesh_dlq_records",
            "Records sent to the dead-letter topic, by reason",
            ["category", "reason"],
            registry=self.registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], MetricWrapperBase] = {}

    def child(self, metric: _M, category: str, *labels: str) -> _M:
        """`metric.labels(metric_category(category), *labels)`, cached: the hot path asks for
        the same few children."""
        key = (id(metric), (category, *labels))
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(metric_category(category), *labels)
        return found  # type: ignore[return-value]
