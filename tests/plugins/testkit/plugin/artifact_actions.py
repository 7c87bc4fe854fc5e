"""Typed artifacts between pipeline steps: one action saves a value, another reads it back."""

from __future__ import annotations

import csv
import io
from typing import Any

from pydantic import BaseModel

from runmesh.plugins import Action
from runmesh.plugins.artifacts import (
    Artifact,
    ArtifactError,
    ArtifactSerializer,
    load_artifact,
    register_serializer,
    save_artifact,
)


class CsvRows(ArtifactSerializer):
    """The plugin's own serializer: rows of strings as CSV."""

    name = "testkit.csv-rows"
    media_type = "text/csv"

    def validate(self, value: Any) -> None:
        if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
            raise ArtifactError("testkit.csv-rows writes a list of rows")

    def serialize(self, value: Any) -> bytes:
        out = io.StringIO()
        csv.writer(out).writerows(value)
        return out.getvalue().encode()

    def deserialize(self, data: bytes) -> Any:
        return [row for row in csv.reader(io.StringIO(data.decode()))]


# Registered when the plugin's module is imported: in the worker, and in a job's process.
register_serializer(CsvRows())


class SaveReportParams(BaseModel):
    rows: list[list[str]]
    serializer: str = "testkit.csv-rows"


class SaveReport(Action):
    """Saves `rows` as a typed artifact; its result holds the reference."""

    name = "save_report"
    params_model = SaveReportParams

    async def start(self) -> dict[str, object]:
        params: SaveReportParams = self.params  # type: ignore[assignment]
        report = await save_artifact(
            self.run, "report.csv", params.rows, type="report:rows", serializer=params.serializer
        )
        return {"report": report.model_dump()}


class ReadReportParams(BaseModel):
    report: Artifact


class ReadReport(Action):
    """Reads the artifact it is given, deserialized."""

    name = "read_report"
    params_model = ReadReportParams

    async def start(self) -> dict[str, object]:
        params: ReadReportParams = self.params  # type: ignore[assignment]
        return {"rows": await load_artifact(self.run, params.report)}
