"""What a schedule is: its cron expression, time zone, overlap policy and what it submits."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runmesh.gateway.pipelines.start import SubmitPipeline
from runmesh.gateway.run_submission import SubmitRun

Overlap = Literal["skip", "queue", "cancel_previous"]


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    """The first tick of `cron`, read in `timezone`, strictly after `after` (aware, UTC)."""
    local = after.astimezone(ZoneInfo(timezone))
    tick: datetime = croniter(cron, local).get_next(datetime)
    return tick.astimezone(ZoneInfo("UTC"))


class ScheduleIn(BaseModel):
    """A schedule to create: when, in which zone, what to do on overlap, and what to submit
    (exactly one of `run` and `pipeline`, as `POST /v1/runs` and `POST /v1/pipelines` take
    them, without a `run_id`: each tick makes a run of its own)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cron: str = Field(
        max_length=200,
        description="5 fields (minute hour day month weekday), or 6 with seconds last",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(
        default="UTC", max_length=100, description="IANA zone, e.g. Europe/Berlin"
    )
    overlap: Overlap = Field(
        default="skip",
        description="When a tick comes while the previous run has not ended: `skip` the tick, "
        "`queue` another run, or `cancel_previous` and start the new one",
    )
    run: SubmitRun | None = None
    pipeline: SubmitPipeline | None = None

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError("not a cron expression of 5 or 6 fields")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _fires(self) -> ScheduleIn:
        try:  # a valid expression may name no real day (`0 0 31 2 *`)
            next_tick(self.cron, self.timezone, datetime.now(ZoneInfo("UTC")))
        except ValueError:  # croniter's CroniterBadDateError is one
            raise ValueError(f"cron {self.cron!r} never fires") from None
        return self

    @model_validator(mode="after")
    def _one_submission(self) -> ScheduleIn:
        if (self.run is None) == (self.pipeline is None):
            raise ValueError("give exactly one of `run` and `pipeline`")
        submission = self.run or self.pipeline
        if submission is not None and submission.run_id is not None:
            raise ValueError("a scheduled submission takes no run_id: each tick makes a new run")
        return self


class ScheduleOut(BaseModel):
    """A schedule, with when it fires next and what it did last."""

    id: uuid.UUID
    name: str
    cron: str
    timezone: str
    overlap: Overlap
    submission: dict[str, object] = Field(description="`{run: …}` or `{pipeline: …}`")
    paused: bool
    next_at: datetime = Field(description="Its next tick (while paused: when it would be)")
    last_fired_at: datetime | None
    last_run_id: uuid.UUID | None = Field(description="The run its last fired tick made")
    fired: int = Field(description="Ticks that submitted a run")
    skipped: int = Field(description="Ticks skipped: the previous run had not ended (`skip`)")
    last_error: str | None = Field(description="Why its last tick submitted nothing, if so")
    created_at: datetime
