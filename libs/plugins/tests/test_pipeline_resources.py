"""A pipeline action's resources: open before the first step, closed after the last whatever
the outcome, a failed close logged and never the run's outcome."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from pydantic import BaseModel

from runmesh.core.events import EventPayload
from runmesh.core.settings import Settings
from runmesh.pipeline import PipelineAction, RunResources, Step
from runmesh.pipeline.resources import open_run_resources
from runmesh.plugins import Run, RunContext
from runmesh.storage import StoragePolicyError


class ListSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, EventPayload]] = []

    def emit(self, event_type: str, payload: EventPayload) -> None:
        self.events.append((event_type, payload))


class Params(BaseModel):
    fail_in: str = ""  # "open", a step's name, or "" (none fails)


@dataclass
class Ctx:
    run: Run
    pool: asyncpg.Pool
    trail: list[str] = field(default_factory=list)


class Query(Step[Ctx]):
    """Uses the pool in `execute` and in `rollback`: both see it open."""

    def __init__(self, name: str, fail: bool) -> None:
        self.step_name, self.fail = name, fail

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.step_name

    async def execute(self, ctx: Ctx) -> None:
        ctx.trail.append(f"do {self.name}: {await ctx.pool.fetchval('SELECT 1')}")
        if self.fail:
            raise ValueError(f"{self.name} failed")

    async def rollback(self, ctx: Ctx) -> None:
        ctx.trail.append(f"undo {self.name}: {await ctx.pool.fetchval('SELECT 2')}")


class Probe(PipelineAction[Params, Ctx]):
    name = "probe"
    params_model = Params

    def __init__(self, params: Params, run: Run) -> None:
        super().__init__(params, run)
        self.closed: list[str] = []
        self.ctx: Ctx | None = None
        self.pool: asyncpg.Pool | None = None
        self.failures: list[str] = []

    def steps(self) -> Sequence[Step[Ctx]]:
        return [Query(name, self.params.fail_in == name) for name in ("a", "b")]

    async def open_context(self, resources: RunResources) -> Ctx:
        self.pool = resources.pool

        async def close(what: str) -> None:
            self.closed.append(what)
            if what == "broken":
                raise OSError("cannot close")

        for what in ("first", "broken", "last"):
            resources.on_close(functools.partial(close, what), what)
        if self.params.fail_in == "open":
            raise ValueError("storage 7 not found")
        self.ctx = Ctx(self.run, resources.pool)
        return self.ctx

    def result(self, ctx: Ctx) -> dict[str, object]:
        return {"trail": ctx.trail}

    def on_failure(self, exc: Exception) -> None:
        # The resources are closed by the time the failure is reported.
        assert self.pool is None or self.pool.is_closing()
        self.failures.append(str(exc))


def probe(settings: Settings | None, fail_in: str = "") -> Probe:
    run = Run(
        run_id=uuid.uuid4(),
        attempt=1,
        sink=ListSink(),
        context=RunContext(tenant="t", settings=settings),
    )
    return Probe(Params(fail_in=fail_in), run)


async def test_steps_see_the_resources_open_and_they_close_after_in_reverse(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    action = probe(settings)
    with caplog.at_level(logging.WARNING, logger="runmesh.pipeline.resources"):
        result = await action.start()
    assert result == {"trail": ["do a: 1", "do b: 1"]}
    assert action.closed == ["last", "broken", "first"]
    assert action.pool is not None and action.pool.is_closing()
    assert any("closing broken failed" in record.getMessage() for record in caplog.records)
    assert action.failures == []


async def test_a_failed_step_rolls_back_while_the_resources_are_still_open(
    settings: Settings,
) -> None:
    action = probe(settings, fail_in="b")
    with pytest.raises(ValueError, match="b failed"):
        await action.start()
    assert action.ctx is not None
    assert action.ctx.trail == ["do a: 1", "do b: 1", "undo b: 2", "undo a: 2"]
    assert action.closed == ["last", "broken", "first"]
    assert action.pool is not None and action.pool.is_closing()
    assert action.failures == ["b failed"]


async def test_a_resource_that_fails_to_open_fails_the_run_before_any_step(
    settings: Settings,
) -> None:
    action = probe(settings, fail_in="open")
    with pytest.raises(ValueError, match="storage 7 not found"):
        await action.start()
    assert action.ctx is None  # no step ran, so none is rolled back
    assert action.closed == ["last", "broken", "first"]
    assert action.pool is not None and action.pool.is_closing()
    assert action.failures == ["storage 7 not found"]


async def test_a_run_without_platform_settings_is_refused_by_name_before_anything() -> None:
    action = probe(None)
    with pytest.raises(RuntimeError, match="the probe action needs the platform settings"):
        await action.start()
    assert action.pool is None and action.failures == []


async def test_a_tenant_storage_opens_and_a_refused_or_broken_one_is_named(
    settings: Settings, tmp_path: Path
) -> None:
    class Refused(Exception):
        pass

    settings = settings.model_copy(update={"storage_file_roots": [tmp_path]})
    async with open_run_resources(probe(settings).run, settings) as resources:
        opened = resources.tenant_storage(
            "file", {"root": str(tmp_path)}, named="storage 'data'", failed=Refused
        )
        await opened.write_bytes("a.txt", b"x")
        with pytest.raises(StoragePolicyError, match=r"^storage 'outside': "):
            resources.tenant_storage(
                "file", {"root": "/etc"}, named="storage 'outside'", failed=Refused
            )
        with pytest.raises(Refused, match=r"^cannot open storage 'odd': invalid 'file'"):
            resources.tenant_storage("file", {"rot": "/x"}, named="storage 'odd'", failed=Refused)
    assert (tmp_path / "a.txt").read_bytes() == b"x"
