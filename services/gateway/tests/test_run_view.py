"""The Run JSON of the API: secret masking, overall percent, per-category elapsed and ETA."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from runmesh.gateway.run_view import (
    SECRET_MASK,
    category_view,
    mask_secrets,
    overall_percent,
    run_view,
    shown_params,
)

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class Inner(BaseModel):
    password: SecretStr
    host: str = "h"


class Params(BaseModel):
    name: str
    token: SecretStr | None = None
    key: SecretStr
    inner: Inner | None = None
    many: list[Inner] = []
    by_name: dict[str, Inner] = {}


SCHEMA = Params.model_json_schema()


def test_secrets_are_masked_wherever_the_schema_declares_them() -> None:
    params = {
        "name": "ada",
        "token": "t0p",
        "key": "k3y",
        "inner": {"password": "p1", "host": "db"},
        "many": [{"password": "p2"}, {"password": "p3", "host": "x"}],
        "by_name": {"a": {"password": "p4"}},
        "unknown": "kept",
    }

    masked = mask_secrets(params, SCHEMA)

    assert masked == {
        "name": "ada",
        "token": SECRET_MASK,
        "key": SECRET_MASK,
        "inner": {"password": SECRET_MASK, "host": "db"},
        "many": [{"password": SECRET_MASK}, {"password": SECRET_MASK, "host": "x"}],
        "by_name": {"a": {"password": SECRET_MASK}},
        "unknown": "kept",
    }
    assert params["token"] == "t0p"  # the input is not changed


def test_masking_matches_what_pydantic_shows_for_validated_params() -> None:
    params = {"name": "ada", "token": "t0p", "key": "k3y", "inner": {"password": "p1"}}
    by_worker = Params.model_validate(params).model_dump(mode="json", exclude_defaults=True)
    assert mask_secrets(params, SCHEMA) == by_worker


def test_null_secrets_stay_null_and_write_only_alone_counts() -> None:
    schema = {"properties": {"a": {"type": "string", "writeOnly": True}, "b": {"type": "string"}}}
    assert mask_secrets({"a": "x", "b": "y"}, schema) == {"a": SECRET_MASK, "b": "y"}
    assert mask_secrets({"token": None, "name": "n", "key": "k"}, SCHEMA)["token"] is None


def test_no_schema_means_nothing_is_masked_and_refs_do_not_loop() -> None:
    assert mask_secrets({"a": 1}, {}) == {"a": 1}
    looping = {"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}
    assert mask_secrets({"a": 1}, looping) == {"a": 1}


def test_shown_params_are_the_redacted_copy_once_started() -> None:
    row = {"params": {"key": "k3y"}, "params_redacted": {"key": SECRET_MASK}, "started_at": T0}
    assert shown_params(row, None) == {"key": SECRET_MASK}
    queued = {"params": {"name": "n", "key": "k3y"}, "params_redacted": {}, "started_at": None}
    assert shown_params(queued, SCHEMA) == {"name": "n", "key": SECRET_MASK}
    # Without the schema only the copy masked at submission may be shown, never raw params.
    assert shown_params(queued, None) == {}


def progress(current: float, total: float | None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"current": current, "total": total}
    entry.update(extra)
    return entry


@pytest.mark.parametrize(
    ("state", "entries", "categories", "expected"),
    [
        ("running", {}, None, 0.0),
        ("succeeded", {}, None, 100.0),
        ("running", {"a": progress(1, 4)}, None, 25.0),
        ("running", {"a": progress(1, 4), "b": progress(3, 4)}, None, 50.0),
        # Weighted by proportion; a declared category without events counts 0.
        (
            "running",
            {"upload": progress(10, 10)},
            {"upload": {"proportion": 30}, "index": {"proportion": 70}},
            30.0,
        ),
        (
            "running",
            {"upload": progress(10, 10), "index": progress(1, 2)},
            {"upload": {"proportion": 30}, "index": {"proportion": 70}},
            65.0,
        ),
        # Categories without proportion: the mean of what was reported.
        ("failed", {"a": progress(1, 2)}, {"a": {"description": "A"}}, 50.0),
        # An unknown total counts 0, not 100 or an error.
        ("running", {"a": progress(5, None), "b": progress(1, 1)}, None, 50.0),
        ("running", {"a": progress(1, 4, percent=80.0)}, None, 80.0),
        ("running", {"a": progress(9, 4)}, None, 100.0),
    ],
)
def test_overall_percent(
    state: str,
    entries: dict[str, dict[str, Any]],
    categories: dict[str, dict[str, Any]] | None,
    expected: float,
) -> None:
    assert overall_percent(state, entries, categories) == pytest.approx(expected)


def test_eta_comes_from_the_rate_since_the_first_event() -> None:
    entry = progress(40, 100, first_at=T0.isoformat(), first_current=20, updated_at=T0.isoformat())
    view = category_view(entry, now=T0 + timedelta(seconds=10), run_ended_at=None)
    # 20 units in 10 s: 2/s, 60 left → 30 s.
    assert view.elapsed_s == pytest.approx(10.0)
    assert view.eta_s == pytest.approx(30.0)
    assert view.percent == pytest.approx(40.0)


def test_eta_is_unknown_without_a_total_or_movement_and_zero_when_complete() -> None:
    later = T0 + timedelta(seconds=5)
    start = {"first_at": T0.isoformat(), "first_current": 3}
    assert category_view(progress(3, 10, **start), now=later, run_ended_at=None).eta_s is None
    assert category_view(progress(7, None, **start), now=later, run_ended_at=None).eta_s is None
    done = progress(10, 10, **start, updated_at=(T0 + timedelta(seconds=2)).isoformat())
    view = category_view(done, now=T0 + timedelta(hours=1), run_ended_at=None)
    assert view.eta_s == 0.0
    assert view.elapsed_s == pytest.approx(2.0)  # the clock stopped when it completed


def test_elapsed_stops_when_the_run_ended() -> None:
    entry = progress(
        5, 10, first_at=T0.isoformat(), updated_at=(T0 + timedelta(seconds=4)).isoformat()
    )
    view = category_view(entry, now=T0 + timedelta(days=1), run_ended_at=T0 + timedelta(seconds=9))
    assert view.elapsed_s == pytest.approx(4.0)
    assert view.eta_s is None


def test_epoch_and_naive_timestamps_are_read_as_utc() -> None:
    entry = progress(1, 2, first_at=T0.timestamp(), first_current=0)
    view = category_view(entry, now=T0 + timedelta(seconds=1), run_ended_at=None)
    assert view.elapsed_s == pytest.approx(1.0)
    naive = progress(1, 2, first_at=T0.replace(tzinfo=None).isoformat(), first_current=0)
    view = category_view(naive, now=T0 + timedelta(seconds=1), run_ended_at=None)
    assert view.elapsed_s == pytest.approx(1.0)


def row(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": uuid.uuid4(),
        "category": "test",
        "plugin": None,
        "plugin_version": None,
        "action": "echo",
        "state": "queued",
        "attempt": 0,
        "params": {"name": "n", "key": "k3y"},
        "params_redacted": {},
        "progress": {},
        "metrics": {},
        "result": None,
        "error": None,
        "created_at": T0,
        "started_at": None,
        "finished_at": None,
        "updated_at": T0,
        "parent_run_id": None,
    }
    base.update(overrides)
    return base


def test_a_queued_run() -> None:
    view = run_view(row(), action={"params_schema": SCHEMA}, plugin_code="testkit", now=T0)
    assert view.state == "queued"
    assert view.plugin == "testkit"
    assert view.params == {"name": "n", "key": SECRET_MASK}
    assert view.percent == 0.0
    assert view.progress == {}
    assert view.error is None and view.result is None


def test_a_succeeded_run_shows_everything_of_the_contract() -> None:
    parent = uuid.uuid4()
    ts = T0.isoformat()
    stored = row(
        state="succeeded",
        attempt=1,
        plugin="testkit",
        plugin_version="1.0.0",
        params_redacted={"name": "n", "key": SECRET_MASK},
        started_at=T0,
        finished_at=T0 + timedelta(seconds=3),
        progress={"echo": progress(5, 5, percent=100.0, first_at=ts, updated_at=ts)},
        metrics={"echo": {"count": 5}},
        result={"ok": True},
        parent_run_id=parent,
    )
    view = run_view(stored, action={"progress_categories": {"echo": {"proportion": 100}}})
    body = view.model_dump(mode="json")
    assert set(body) == {
        "id", "category", "plugin", "plugin_version", "action", "state", "attempt", "params",
        "percent", "progress", "metrics", "result", "error", "created_at", "started_at",
        "finished_at", "parent_run_id", "retry_reason", "name", "placement", "pool", "priority",
        "resources", "queue",
    }  # fmt: skip
    assert (body["placement"], body["pool"], body["queue"]) == (None, None, None)
    assert body["priority"] == 5  # the default
    assert body["name"] == "n"  # its name param, as shown
    assert body["retry_reason"] is None  # a first attempt
    assert body["percent"] == 100.0
    assert body["progress"]["echo"]["percent"] == 100.0
    assert body["progress"]["echo"]["eta_s"] == 0.0
    assert body["metrics"] == {"echo": {"count": 5.0}}
    assert body["parent_run_id"] == str(parent)


def test_a_failed_run_shows_its_error_without_retryable() -> None:
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback…", "retryable": False}
    view = run_view(row(state="failed", attempt=1, error=error, finished_at=T0))
    assert view.error is not None
    assert view.error.model_dump() == {
        "type": "ValueError",
        "message": "boom",
        "traceback": "Traceback…",
    }
