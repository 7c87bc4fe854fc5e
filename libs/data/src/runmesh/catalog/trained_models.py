"""Typed data access to `catalog.models`: the models train and tune runs register, each
function scoped by the tenant it takes first."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from runmesh.catalog.errors import DuplicateNameError
from runmesh.catalog.repository import Executor, fetch_newest_first, fetch_tenant_row
from runmesh.core.events import JsonObject

_TIMEOUT_S = 30.0
_COLUMNS = (
    "id, tenant, name, description, plugin, plugin_version, action, run_id, base_model_id,"
    " dataset::text AS dataset, classes::text AS classes, params::text AS params,"
    " metrics::text AS metrics, artifact_uri, created_at"
)


@dataclass(slots=True, frozen=True)
class NewModel:
    """What a train or tune run registers."""

    name: str
    description: str
    plugin: str
    plugin_version: str
    action: str
    run_id: uuid.UUID
    dataset: JsonObject
    classes: list[str]
    params: JsonObject
    metrics: Mapping[str, float]
    artifact_uri: str
    base_model_id: uuid.UUID | None = None


@dataclass(slots=True, frozen=True)
class ModelRow:
    """A `catalog.models` row."""

    id: uuid.UUID
    tenant: str
    name: str
    description: str
    plugin: str
    plugin_version: str
    action: str
    run_id: uuid.UUID
    base_model_id: uuid.UUID | None
    dataset: JsonObject
    classes: list[str]
    params: JsonObject
    metrics: dict[str, float]
    artifact_uri: str
    created_at: datetime


def _model(row: Mapping[str, Any]) -> ModelRow:
    return ModelRow(
        id=row["id"],
        tenant=row["tenant"],
        name=row["name"],
        description=row["description"],
        plugin=row["plugin"],
        plugin_version=row["plugin_version"],
        action=row["action"],
        run_id=row["run_id"],
        base_model_id=row["base_model_id"],
        dataset=orjson.loads(row["dataset"]),
        classes=orjson.loads(row["classes"]),
        params=orjson.loads(row["params"]),
        metrics=orjson.loads(row["metrics"]),
        artifact_uri=row["artifact_uri"],
        created_at=row["created_at"],
    )


async def register_model(conn: Executor, tenant: str, model: NewModel) -> ModelRow:
    """Store the run's model; a run that registers again (a retried attempt) updates its own
    row. `DuplicateNameError` when another run's model has the name."""
    try:
        row = await conn.fetchrow(
            f"""
        INSERT INTO catalog.models (id, tenant, name, description, plugin, plugin_version,
            action, run_id, base_model_id, dataset, classes, params, metrics, artifact_uri)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11::text::jsonb,
            $12::text::jsonb, $13::text::jsonb, $14)
        ON CONFLICT (tenant, run_id) DO UPDATE SET
            name = excluded.name, description = excluded.description,
            dataset = excluded.dataset, classes = excluded.classes, params = excluded.params,
            metrics = excluded.metrics, artifact_uri = excluded.artifact_uri
        RETURNING {_COLUMNS}
        """,
            uuid.uuid4(),
            tenant,
            model.name,
            model.description,
            model.plugin,
            model.plugin_version,
            model.action,
            model.run_id,
            model.base_model_id,
            orjson.dumps(model.dataset).decode(),
            orjson.dumps(model.classes).decode(),
            orjson.dumps(model.params).decode(),
            orjson.dumps(dict(model.metrics)).decode(),
            model.artifact_uri,
            timeout=_TIMEOUT_S,
        )
    except asyncpg.UniqueViolationError as exc:  # (tenant, name): another run's model
        raise DuplicateNameError(f"a model named {model.name!r} exists already") from exc
    assert row is not None
    return _model(row)


async def name_taken(conn: Executor, tenant: str, name: str, run_id: uuid.UUID) -> bool:
    """Whether a model of another run has the name (a train run checks before training)."""
    found = await conn.fetchval(
        "SELECT 1 FROM catalog.models WHERE tenant = $1 AND name = $2 AND run_id <> $3",
        tenant,
        name,
        run_id,
        timeout=_TIMEOUT_S,
    )
    return found is not None


async def get_model(conn: Executor, tenant: str, model_id: uuid.UUID) -> ModelRow | None:
    """The tenant's model, or None (also for another tenant's)."""
    row = await fetch_tenant_row(conn, "models", _COLUMNS, tenant, model_id)
    return None if row is None else _model(row)


async def list_models(
    conn: Executor, tenant: str, *, before: tuple[datetime, uuid.UUID] | None, limit: int
) -> list[ModelRow]:
    """The tenant's models, newest first, after the keyset position `before`."""
    rows = await fetch_newest_first(conn, "models", _COLUMNS, tenant, before, limit)
    return [_model(row) for row in rows]


async def record_test(
    conn: Executor, tenant: str, model_id: uuid.UUID, metrics: Mapping[str, float]
) -> ModelRow | None:
    """Add a `test` run's scores to the model's metrics (a later test's replace an earlier's
    of the same names); None when the model is gone."""
    row = await conn.fetchrow(
        f"""
        UPDATE catalog.models SET metrics = metrics || $3::text::jsonb
        WHERE tenant = $1 AND id = $2
        RETURNING {_COLUMNS}
        """,
        tenant,
        model_id,
        orjson.dumps(dict(metrics)).decode(),
        timeout=_TIMEOUT_S,
    )
    return None if row is None else _model(row)
