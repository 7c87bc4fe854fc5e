"""What the REST routers share: Prometheus metrics per app, a measuring route class,
parameter types the database can hold, docs.

Each app keeps its own `CollectorRegistry` on `app.state` (created on first use), so several
gateways in one process (tests, restarts) never clash on metric registration.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from runmesh.core.categories import metric_category
from runmesh.core.retries import RetryCollector
from runmesh.gateway.errors import GatewayError

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics:
    """The gateway's Prometheus metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(RetryCollector())
        self.http_requests = Counter(
            "runmesh_gateway_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "runmesh_gateway_http_request_duration_seconds",
            "Time to answer HTTP requests, by method and route template",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.runs_submitted = Counter(
            "runmesh_gateway_runs_submitted",
            "Runs accepted over REST (new runs only, not idempotent repeats), by built-in "
            "category (any other is `other`)",
            ["category"],
            registry=self.registry,
        )
        self.runs_cancelled = Counter(
            "runmesh_gateway_cancel_requests",
            "Cancel requests accepted, by the state the run was in",
            ["state"],
            registry=self.registry,
        )
        self.outbox_pending = Gauge(
            "runmesh_gateway_outbox_pending",
            "Outbox records not yet published to Kafka (measured at scrape time)",
            registry=self.registry,
        )
        self.kafka_reachable = Gauge(
            "runmesh_gateway_kafka_reachable",
            "1 when the outbox relay's last contact with Kafka succeeded",
            registry=self.registry,
        )

    def count_submitted(self, category: str) -> None:
        """Count one new run; a category that is not built in counts as `other` (a tenant may
        name its published plugins' categories, and /metrics is open to every scraper)."""
        self.runs_submitted.labels(metric_category(category)).inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_latency.labels(method, route).observe(seconds)


def gateway_metrics(app: FastAPI) -> GatewayMetrics:
    """The app's metrics, created on first use."""
    metrics: GatewayMetrics | None = getattr(app.state, "gateway_metrics", None)
    if metrics is None:
        metrics = app.state.gateway_metrics = GatewayMetrics()
    return metrics


def _status_of(exc: Exception) -> int:
    if isinstance(exc, GatewayError):
        return exc.status
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, HTTPException):
        return exc.status_code
    return 500


# -- parameter types the database can hold ---------------------------------------------------

INT64_MAX: Final = 2**63 - 1
INT32_MAX: Final = 2**31 - 1

Int64 = Annotated[int, Field(le=INT64_MAX)]
"""An id or position in a PostgreSQL `bigint` column (event ids, task and unit ids): a larger
number is a 422, not an overflow in the driver. Wrap it in `Query`/`Path` for the rest."""

Int32 = Annotated[int, Field(le=INT32_MAX)]
"""A number in a PostgreSQL `integer` column (a run's attempt)."""


def as_utc(value: datetime) -> datetime:
    """`value` in UTC (a naive one is taken as UTC); `ValueError` when its UTC time is not a
    date (`0001-01-01T00:00:00+01:00` is in year 0)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("its UTC time is outside years 1 to 9999") from None


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]
"""A timestamp filter, as UTC: one whose UTC time no datetime holds is a 422."""


class MeasuredRoute(APIRoute):
    """An `APIRoute` that counts its requests and their latency by route template.

    Errors raised by the handler or its dependencies (auth, validation) are counted with the
    status their problem+json answer will have, then re-raised for the exception handlers.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """The framework's handler wrapped with measurement."""
        handler = super().get_route_handler()
        route = self.path_format

        async def measured(request: Request) -> Response:
            began = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
            except Exception as exc:
                status = _status_of(exc)
                raise
            else:
                status = response.status_code
                return response
            finally:
                gateway_metrics(request.app).observe(
                    request.method, route, status, time.perf_counter() - began
                )

        return measured


class Problem(BaseModel):
    """An error answer (RFC 9457 problem+json); extra members depend on the error."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


_PROBLEM_TEXT = {
    401: "No or an invalid API token",
    404: "No such resource for this tenant",
    409: "The resource's state does not allow this",
    413: "The request body is larger than the route's limit (RUNMESH_GATEWAY_MAX_BODY_BYTES)",
    422: "Invalid request; `errors` lists field errors as {loc, msg} (NUL, lone surrogates, "
    "integers past 64 bits and JSON deeper than 64 levels included)",
    429: "Over a limit of the tenant's (its queued runs); the `Retry-After` header says when "
    "to try again",
    503: "Not ready",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries documenting problem+json errors."""
    schema = Problem.model_json_schema()
    return {
        status: {
            "description": _PROBLEM_TEXT.get(status, "Error"),
            "content": {"application/problem+json": {"schema": schema}},
        }
        for status in statuses
    }
