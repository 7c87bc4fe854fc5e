"""Liveness, readiness and Prometheus metrics (no auth: probes and scrapers have no token)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.problems import problem
from runmesh.gateway.routes.support import MeasuredRoute, gateway_metrics, problems

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"], route_class=MeasuredRoute)

_DB_CHECK_TIMEOUT_S = 2.0
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: dict[str, str]


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> Health:
    """Always 200 while the process serves (no dependency is checked)."""
    return Health()


async def _postgres_ok(pool: asyncpg.Pool) -> bool:
    try:
        async with asyncio.timeout(_DB_CHECK_TIMEOUT_S):
            answer = await pool.fetchval("SELECT 1", timeout=_DB_CHECK_TIMEOUT_S)
    except _DB_ERRORS as exc:
        log.warning("readiness: PostgreSQL check failed: %s", exc)
        return False
    return bool(answer == 1)


@router.get(
    "/readyz",
    summary="Readiness: PostgreSQL answers and Kafka is reachable",
    response_model=Readiness,
    responses=problems(503),
)
async def readyz(deps: Annotated[Deps, Depends(get_deps)]) -> JSONResponse | Readiness:
    """200 when PostgreSQL answers `SELECT 1` and the outbox relay's last contact with Kafka
    succeeded; otherwise 503 problem+json naming what is not ready."""
    checks = {
        "postgres": "ok" if await _postgres_ok(deps.pool) else "unavailable",
        "kafka": "ok" if deps.relay.kafka_reachable else "unreachable",
    }
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return problem(503, "Not ready", f"not ready: {', '.join(failing)}", checks=checks)
    return Readiness(checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, deps: Annotated[Deps, Depends(get_deps)]) -> PlainTextResponse:
    """HTTP requests by route and status, latency, runs submitted, outbox backlog."""
    registry = gateway_metrics(request.app)
    try:
        pending = await deps.pool.fetchval(
            "SELECT count(*) FROM runs.outbox WHERE sent_at IS NULL AND NOT held",
            timeout=_DB_CHECK_TIMEOUT_S,
        )
    except _DB_ERRORS:
        pending = None  # the scrape still answers; the gauge keeps its last value
    if pending is not None:
        registry.outbox_pending.set(pending)
    registry.kafka_reachable.set(1 if deps.relay.kafka_reachable else 0)
    return PlainTextResponse(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
