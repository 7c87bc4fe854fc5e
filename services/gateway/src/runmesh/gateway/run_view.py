"""The Run JSON of the API (DESIGN §5), derived from a `runs.runs` row by pure functions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from runmesh.core.events import TERMINAL_STATES, JsonObject, RunState
from runmesh.core.run_policy import (
    DEFAULT_PRIORITY,
    PRIORITY_MAX,
    PRIORITY_MIN,
    Placement,
    Resources,
)
from runmesh.gateway.queue_view import QueueOut
from runmesh.gateway.runs_store import PIPELINE_CATEGORY

SECRET_MASK = "**********"
"""What a secret value shows as: the mask pydantic prints for `SecretStr`, so a run's params
look the same before it started (masked here) and after (masked by the worker)."""


class CategoryProgress(BaseModel):
    """Progress of one progress category, with timing derived from its first event."""

    current: float
    total: float | None = None
    percent: float | None = Field(default=None, description="current / total, 0-100")
    elapsed_s: float | None = Field(
        default=None, description="Seconds since the category's first progress event"
    )
    eta_s: float | None = Field(
        default=None,
        description="Estimated seconds left, from the rate since the category's first event",
    )


class RunErrorOut(BaseModel):
    """Why a run failed."""

    type: str
    message: str
    traceback: str | None = None


class RunOut(BaseModel):
    """A run as the API shows it (DESIGN §5)."""

    id: uuid.UUID
    category: str
    plugin: str | None = Field(description="Plugin code (or code@version) as requested/resolved")
    plugin_version: str | None = Field(description="The version that ran (set once started)")
    action: str
    name: str | None = Field(
        default=None,
        description="What people call the run: its `name` param, or a pipeline's name",
    )
    state: RunState
    attempt: int = Field(description="Latest attempt seen; 0 = not started yet")
    retry_reason: str | None = Field(
        default=None,
        description="Why the latest attempt started, when it is not the first: `worker lost` "
        "(the attempt before it never ended: its worker died or left mid-run) or `retryable "
        "failure` (the attempt before it failed with an error a retry may fix)",
    )
    params: JsonObject = Field(description="Params with secret fields masked")
    percent: float = Field(description="Overall progress, 0-100, from the category proportions")
    progress: dict[str, CategoryProgress] = Field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Latest value per metrics category and name"
    )
    result: JsonObject | None = None
    error: RunErrorOut | None = Field(
        default=None,
        description="Why it failed; on a running run, the failure of an attempt that is "
        "retried after a backoff",
    )
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    parent_run_id: uuid.UUID | None = None
    placement: Placement | None = Field(
        default=None, description="The pools and labels it asked for (its own or its action's)"
    )
    pool: str | None = Field(
        default=None,
        description="The pool its request went to; null while held, and for a run produced "
        "straight to Kafka",
    )
    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=PRIORITY_MIN,
        le=PRIORITY_MAX,
        description="1 (lowest) to 9 (highest): among the queued runs of its pool, a higher "
        "priority starts first",
    )
    resources: Resources | None = Field(
        default=None, description="What it asked of its worker (its own or its action's)"
    )
    queue: QueueOut | None = Field(
        default=None, description="While queued: where the run stands and why it waits"
    )


# -- secrets ---------------------------------------------------------------------------------


def _is_secret(schema: Mapping[str, Any]) -> bool:
    # pydantic renders SecretStr/SecretBytes as {"format": "password", "writeOnly": true}.
    return schema.get("format") == "password" or schema.get("writeOnly") is True


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local `$ref`s (`#/$defs/Name`), as pydantic emits for nested models."""
    seen: set[str] = set()
    while isinstance(ref := schema.get("$ref"), str) and ref.startswith("#/") and ref not in seen:
        seen.add(ref)
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        if not isinstance(target, Mapping):
            break
        schema = target
    return schema


def _variants(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The schema and the branches of its `anyOf`/`oneOf`/`allOf`, refs resolved."""
    schema = _resolve(schema, root)
    found = [schema]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key) or ():
            if isinstance(branch, Mapping):
                found.extend(_variants(branch, root))
    return found


def mask_secrets(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any] | None = None
) -> Any:
    """`value` with every non-null value at a secret location of `schema` replaced by the mask.

    Walks properties, `additionalProperties`, array `items`, `$ref`s and unions; a value whose
    schema is unknown is kept as it is (no schema, no secrets declared).
    """
    root = schema if root is None else root
    variants = _variants(schema, root)
    if value is None:
        return None
    if any(_is_secret(variant) for variant in variants):
        return SECRET_MASK
    if isinstance(value, dict):
        masked: dict[str, Any] = {}
        for key, item in value.items():
            sub = _property_schema(variants, key)
            masked[key] = mask_secrets(item, sub, root) if sub is not None else item
        return masked
    if isinstance(value, list):
        items = next((v["items"] for v in variants if isinstance(v.get("items"), Mapping)), None)
        if items is None:
            return value
        return [mask_secrets(item, items, root) for item in value]
    return value


def _property_schema(variants: list[Mapping[str, Any]], key: str) -> Mapping[str, Any] | None:
    for variant in variants:
        properties = variant.get("properties")
        if isinstance(properties, Mapping) and isinstance(properties.get(key), Mapping):
            sub: Mapping[str, Any] = properties[key]
            return sub
    for variant in variants:
        extra = variant.get("additionalProperties")
        if isinstance(extra, Mapping):
            return extra
    return None


# -- progress --------------------------------------------------------------------------------


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp stored in JSON: ISO 8601 text or epoch seconds."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def category_percent(entry: Mapping[str, Any]) -> float | None:
    """A category's percent: the stored one, else current / total; None without a total."""
    stored = _as_float(entry.get("percent"))
    if stored is not None:
        return max(0.0, min(100.0, stored))
    current, total = _as_float(entry.get("current")), _as_float(entry.get("total"))
    if current is None or total is None or total <= 0:
        return None
    return max(0.0, min(100.0, current / total * 100.0))


def category_view(
    entry: Mapping[str, Any], *, now: datetime, run_ended_at: datetime | None
) -> CategoryProgress:
    """One category's progress with elapsed time and ETA (the Synapse time_remaining).

    Elapsed counts from the category's first event to now while the run is active, and
    stops at the last update once the category completed or the run ended. The ETA assumes
    the rate since the first event holds: (total - current) / ((current - first) / elapsed).
    """
    current = _as_float(entry.get("current")) or 0.0
    total = _as_float(entry.get("total"))
    percent = category_percent(entry)
    first_at = _as_datetime(entry.get("first_at"))
    updated_at = _as_datetime(entry.get("updated_at"))
    complete = total is not None and current >= total
    # The clock stops when the category completed or the run ended.
    stopped = run_ended_at is not None or complete
    end = (updated_at or run_ended_at or now) if stopped else now
    elapsed = max(0.0, (end - first_at).total_seconds()) if first_at is not None else None
    eta: float | None = None
    if complete:
        eta = 0.0
    elif total is not None and run_ended_at is None and elapsed:
        first_current = _as_float(entry.get("first_current")) or 0.0
        rate = (current - first_current) / elapsed
        if rate > 0:
            eta = (total - current) / rate
    return CategoryProgress(
        current=current,
        total=total,
        percent=_round(percent),
        elapsed_s=_round(elapsed),
        eta_s=_round(eta),
    )


def overall_percent(
    state: str,
    progress: Mapping[str, Mapping[str, Any]],
    categories: Mapping[str, Mapping[str, Any]] | None,
) -> float:
    """The run's overall percent (0-100).

    With proportions declared (`progress_categories: {name: {proportion}}`) it is the
    weighted average of the declared categories, those without events counting 0; without
    proportions it is the mean of the reported categories. A succeeded run is 100.
    """
    if state == "succeeded":
        return 100.0
    weights = {
        name: weight
        for name, spec in (categories or {}).items()
        if (weight := _as_float(spec.get("proportion"))) is not None and weight > 0
    }
    if weights:
        done = sum(
            weight * (category_percent(progress.get(name) or {}) or 0.0)
            for name, weight in weights.items()
        )
        return _round(done / sum(weights.values())) or 0.0
    reported = [category_percent(entry) or 0.0 for entry in progress.values()]
    if not reported:
        return 0.0
    return _round(sum(reported) / len(reported)) or 0.0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- the run ---------------------------------------------------------------------------------


def _error_view(error: Any) -> RunErrorOut | None:
    if not isinstance(error, Mapping):
        return None
    return RunErrorOut(
        type=str(error.get("type") or error.get("error_type") or "Error"),
        message=str(error.get("message") or ""),
        traceback=error.get("traceback") if isinstance(error.get("traceback"), str) else None,
    )


def _metrics_view(metrics: Any) -> dict[str, dict[str, float]]:
    if not isinstance(metrics, Mapping):
        return {}
    return {
        str(category): {
            str(name): float(value)
            for name, value in values.items()
            if _as_float(value) is not None
        }
        for category, values in metrics.items()
        if isinstance(values, Mapping)
    }


def shown_params(row: Mapping[str, Any], params_schema: Mapping[str, Any] | None) -> JsonObject:
    """The params the API shows: the worker's redacted copy once the run started, else the
    submitted params with secret fields masked by the action's schema."""
    redacted = row.get("params_redacted")
    if row.get("started_at") is not None and isinstance(redacted, dict):
        return redacted
    params = row.get("params")
    if isinstance(params, dict) and params_schema is not None:
        masked: JsonObject = mask_secrets(params, params_schema)
        return masked
    # No schema to mask by: only the copy masked when the run was stored may be shown.
    return redacted if isinstance(redacted, dict) else {}


def run_name(category: str, action: str, params: Mapping[str, Any]) -> str | None:
    """A run's name: a pipeline's is its action (the pipeline's name); any other's is its
    `name` param when that is text."""
    if category == PIPELINE_CATEGORY:
        return action
    name = params.get("name")
    return name if isinstance(name, str) and name else None


def run_view(
    row: Mapping[str, Any],
    *,
    action: Mapping[str, Any] | None = None,
    plugin_code: str | None = None,
    now: datetime | None = None,
) -> RunOut:
    """The API's view of a `runs.runs` row.

    `action` is the action's manifest entry (`params_schema`, `progress_categories`) when
    the gateway knows the plugin; `plugin_code` names the resolved plugin of a run submitted
    without one.
    """
    now = now or datetime.now(UTC)
    state = str(row["state"])
    ended_at = row.get("finished_at") or (
        row.get("updated_at") if state in TERMINAL_STATES else None
    )
    raw_progress = row.get("progress")
    progress: dict[str, Mapping[str, Any]] = (
        {str(k): v for k, v in raw_progress.items() if isinstance(v, Mapping)}
        if isinstance(raw_progress, Mapping)
        else {}
    )
    action = action or {}
    schema = action.get("params_schema")
    categories = action.get("progress_categories")
    result = row.get("result")
    params = shown_params(row, schema if isinstance(schema, Mapping) else None)
    return RunOut(
        id=row["id"],
        category=row["category"],
        plugin=row.get("plugin") or plugin_code,
        plugin_version=row.get("plugin_version"),
        action=row["action"],
        name=run_name(row["category"], row["action"], params),
        state=state,  # validated: the table's CHECK constraint holds it to RunState
        attempt=int(row.get("attempt") or 0),
        retry_reason=row.get("retry_reason"),
        params=params,
        percent=overall_percent(
            state, progress, categories if isinstance(categories, Mapping) else None
        ),
        progress={
            name: category_view(entry, now=now, run_ended_at=ended_at)
            for name, entry in progress.items()
        },
        metrics=_metrics_view(row.get("metrics")),
        result=result if isinstance(result, dict) else None,
        error=_error_view(row.get("error")),
        created_at=row["created_at"],
        started_at=row.get("started_at"),
        finished_at=row.get("finished_at"),
        parent_run_id=row.get("parent_run_id"),
        placement=row.get("placement"),
        pool=row.get("pool"),
        priority=row.get("priority") or DEFAULT_PRIORITY,
        resources=row.get("resources"),
    )
