"""The `runmesh dev` demo: the whole chain a data team runs, as one pipeline over REST.

A sample dataset is generated locally and the catalog rows it needs (a storage, a data
collection, a project) are created; then one pipeline (`pipelines/demo.yaml`, also
`examples/pipelines/demo.yaml`) uploads it, turns it into pre-annotated tasks, exports them as
COCO and YOLO, trains on the COCO export and pre-annotates the tasks again with the model.
Each step's run is followed live; a summary table and the dashboard URL end it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from runmesh.cli.demo_dataset import CLASSES, SampleDataset, write_sample_dataset
from runmesh.cli.dev_info import DevInfo
from runmesh.cli.errors import CliError
from runmesh.cli.gateway_client import GatewayClient
from runmesh.cli.pipeline_file import DEMO_PIPELINE, load_definition
from runmesh.cli.pipeline_view import follow_pipeline

DEMO_TIMEOUT_S = 600.0
SAMPLE_FOLDER = "sample"  # in the demo storage, next to the exports
_PLUGINS = ("runmesh-upload", "runmesh-to-task", "runmesh-export", "runmesh-train")


@dataclass(slots=True)
class StepResult:
    """One step of the pipeline, as the summary shows it."""

    step: str
    run_id: str
    state: str
    seconds: float | None
    outcome: str


@dataclass(slots=True)
class DemoCatalog:
    """The catalog rows the demo pipeline works in."""

    storage: str
    data_collection: str
    project: str


async def run_demo(info: DevInfo, out: TextIO, *, data_dir: Path, verbose: bool = False) -> int:
    """Run the demo pipeline through the gateway, rendering each step live (debug log lines
    only when `verbose`); 0 if it succeeded."""
    console = Console(file=out)
    dataset = await asyncio.to_thread(write_sample_dataset, data_dir / SAMPLE_FOLDER)
    console.print(
        f"demo: {dataset.images} sample images with {dataset.boxes} boxes in {dataset.root}",
        highlight=False,
    )
    results: list[StepResult] = []
    catalog: DemoCatalog | None = None
    async with GatewayClient(info.gateway_url, info.token) as api:
        try:
            async with asyncio.timeout(DEMO_TIMEOUT_S):
                await _wait_for_plugins(api)
                name = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"
                catalog = await _create_catalog(api, dataset, name)
                status = await _run_pipeline(api, console, catalog, name, results, info, verbose)
        except (CliError, TimeoutError) as exc:
            console.print(f"[red]demo stopped:[/] {exc or 'timed out'}", highlight=False)
            status = 1
    console.print(_summary(results))
    if catalog is not None:
        console.print(
            f"Demo project: {catalog.project}   storage: {catalog.storage} ({dataset.root.parent})",
            highlight=False,
        )
    console.print(f"Dashboard: {info.gateway_url}/   (token {info.token})", highlight=False)
    return status


async def _create_catalog(api: GatewayClient, dataset: SampleDataset, name: str) -> DemoCatalog:
    async def create(path: str, body: dict[str, Any]) -> str:
        row: dict[str, Any] = await api.request("POST", path, json=body)
        return str(row["id"])

    storage = await create(
        "/v1/storages",
        {"name": name, "provider": "file", "config": {"root": str(dataset.root.parent)}},
    )
    collection = await create(
        "/v1/data-collections",
        {
            "name": name,
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True},
                {"name": "label", "required": True, "extensions": [".json"]},
            ],
        },
    )
    project = await create(
        "/v1/projects",
        {
            "name": name,
            "data_collection_id": collection,
            "annotation_type": "image_detection",
            "label_schema": {"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]},
        },
    )
    return DemoCatalog(storage, collection, project)


async def _run_pipeline(
    api: GatewayClient,
    console: Console,
    catalog: DemoCatalog,
    name: str,
    results: list[StepResult],
    info: DevInfo,
    verbose: bool,
) -> int:
    """Submit the demo pipeline, follow it live and fill `results` from its steps; 0 if it
    succeeded."""
    body = {
        "pipeline": await asyncio.to_thread(load_definition, DEMO_PIPELINE),
        "params": {
            "name": name,
            "storage": catalog.storage,
            "data_collection": catalog.data_collection,
            "project": catalog.project,
            "path": SAMPLE_FOLDER,
        },
    }
    started = await api.request("POST", "/v1/pipelines", json=body)
    run_id = str(started["run"]["id"])
    page = f"{info.gateway_url}/#/runs/{run_id}"
    console.print(f"demo pipeline run {run_id} (its steps: {page})", highlight=False)
    pipeline = await follow_pipeline(api, run_id, console, debug=verbose)
    for step in pipeline["steps"]:
        results.append(await _step_result(api, step))
    run = pipeline["run"]
    if run["state"] != "succeeded":
        raise CliError(f"demo pipeline ended {run['state']}: {_error_text(run)}")
    return 0


async def _step_result(api: GatewayClient, step: dict[str, Any]) -> StepResult:
    """A summary row for a pipeline step: its run's timing and outcome, where it has a run."""
    name, state = str(step["step"]), str(step["state"])
    if step["percent"] is None:  # never ran
        return StepResult(name, str(step["run_id"]), state, None, step.get("error") or "")
    run = await api.run(str(step["run_id"]))
    if run["state"] != "succeeded":
        summary = _error_text(run)
    else:
        outcome = _OUTCOMES.get(name)
        summary = outcome(run.get("result") or {}) if outcome else ""
    return StepResult(name, str(run["id"]), str(run["state"]), _seconds(run), summary)


def _seconds(run: dict[str, Any]) -> float | None:
    began, ended = run.get("started_at"), run.get("finished_at")
    if not (began and ended):
        return None
    return (datetime.fromisoformat(ended) - datetime.fromisoformat(began)).total_seconds()


def _uploaded(result: dict[str, Any]) -> str:
    units, files = _count(result, "data_units", "success"), _count(result, "data_files", "success")
    return f"{units} units, {files} files"


def _count(result: dict[str, Any], *path: str) -> str:
    """The number at `path` in a run's result, or '?' (a result the demo does not know)."""
    value: Any = result
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return f"{value:,}" if isinstance(value, int | float) else "?"


def _validation(result: dict[str, Any]) -> str:
    metrics = result.get("metrics")
    if isinstance(metrics, dict):
        accuracy = metrics.get("validation_box_accuracy")
        if isinstance(accuracy, int | float):
            return f"validation box accuracy {accuracy:.2f}"
    return "trained"


def _error_text(run: dict[str, Any]) -> str:
    error = run.get("error") or {}
    return f"{error.get('type', 'error')}: {error.get('message', 'no message')}"


def _exported(result: dict[str, Any]) -> str:
    return f"{_count(result, 'items', 'exported')} items → {result.get('path', '?')}"


def _trained(result: dict[str, Any]) -> str:
    return f"model {str(result.get('model_id', '?'))[:8]}, {_validation(result)}"


_OUTCOMES: dict[str, Callable[[dict[str, Any]], str]] = {
    "upload": _uploaded,
    "annotate": lambda r: f"{_count(r, 'annotated')} tasks from label files",
    "export_coco": _exported,
    "export_yolo": _exported,
    "train": _trained,
    "predict": lambda r: f"{_count(r, 'annotated')} tasks by the model",
}


def _summary(results: list[StepResult]) -> Table:
    table = Table(title="runmesh demo pipeline", title_justify="left")
    for column in ("step", "run", "state", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("outcome")
    for result in results:
        colour = "green" if result.state == "succeeded" else "red"
        table.add_row(
            result.step,
            result.run_id[:8],
            f"[{colour}]{result.state}[/]",
            "" if result.seconds is None else f"{result.seconds:.1f}s",
            result.outcome,
        )
    return table


async def _wait_for_plugins(api: GatewayClient) -> None:
    """Each service announces its built-in plugin at start; the gateway validates runs
    against them."""
    for code in _PLUGINS:
        while True:
            try:
                await api.request("GET", f"/v1/plugins/{code}")
            except CliError:
                await asyncio.sleep(0.2)
                continue
            break
