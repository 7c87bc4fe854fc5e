"""Request-level retries through one library (stamina), counted per process.

A call that may fail transiently (an S3 part, an HTTP storage request, the attempt claim, the
aggregator's write) is retried by `retried` with exponential backoff and jitter. Every retry
is logged once and counted in `RETRIES`, which each process's `/metrics` serves as
`runmesh_retries_total{operation, error}` (`RetryCollector`). Run-level retries (a failed
attempt started again) are not these: they are events of the run (`run.retrying`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar

import stamina
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

T = TypeVar("T")

RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
"""Which failures are retried: exception types, or a predicate over the exception."""

_log = logging.getLogger("runmesh.retries")


class RetryTally:
    """Retries so far in this process, by operation and error type (thread-safe: storage
    calls of a job's threads count too)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, operation: str, error: str, count: int = 1) -> None:
        """Count `count` retries of `operation` after an `error`."""
        with self._lock:
            self._counts[operation, error] += count

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy of the counts."""
        with self._lock:
            return dict(self._counts)

    def merge(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Add counts taken in another process (a job's, reported with its outcome)."""
        with self._lock:
            self._counts.update(counts)


RETRIES = RetryTally()
"""This process's retries."""


class RetryCollector(Collector):
    """Serves `RETRIES` as `runmesh_retries_total` in a Prometheus registry."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        """The counter family, one sample per (operation, error) seen."""
        family = CounterMetricFamily(
            "runmesh_retries",
            "Request-level retries (S3 and HTTP storage requests, the attempt claim, the "
            "aggregator's writes), by operation and the error that caused them",
            labels=["operation", "error"],
        )
        for (operation, error), count in sorted(RETRIES.snapshot().items()):
            family.add_metric([operation, error], count)
        yield family


def _on_retry(details: RetryDetails) -> None:
    error = details.caused_by
    RETRIES.add(details.name, type(error).__name__)
    _log.warning(
        "%s failed (%s: %s); retry %d in %.2fs",
        details.name,
        type(error).__name__,
        error,
        details.retry_num,
        details.wait_for,
    )


# stamina's default hooks count into the global Prometheus registry, which no runmesh
# /metrics serves, and log with a traceback; ours count into RETRIES and log one line.
set_on_retry_hooks([_on_retry])


async def retried(
    operation: str,
    call: Callable[[], Awaitable[T]],
    *,
    on: RetryOn,
    attempts: int | None,
    wait_initial_s: float = 0.2,
    wait_max_s: float = 10.0,
    timeout_s: float | None = None,
) -> T:
    """`call()`, called again while it fails with what `on` retries.

    At most `attempts` calls (None: no limit) within `timeout_s` (None: no limit). The wait
    before retry n is `wait_initial_s * 2**(n-1)` plus up to `wait_initial_s` of jitter, at
    most `wait_max_s`. `operation` names the call in logs and in the retry counter: a stable
    name (`s3.upload_part`), never one with ids in it.
    """
    async for attempt in stamina.retry_context(
        on=on,
        attempts=attempts,
        timeout=timeout_s,
        wait_initial=wait_initial_s,
        wait_max=wait_max_s,
        wait_jitter=wait_initial_s,
        name=operation,
    ):
        with attempt:
            return await call()
    raise AssertionError("stamina ends with a result or the last error")  # pragma: no cover
