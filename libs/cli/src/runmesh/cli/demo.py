"""The `runmesh dev` demo: the whole chain a data team runs, over REST and SSE as a user would.

A sample dataset is generated locally, then uploaded, turned into pre-annotated tasks,
exported as COCO and YOLO, trained on, and the model pre-annotates the tasks again. Each run
is followed live; a summary table and the dashboard URL end it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table

from runmesh.cli.demo_dataset import CLASSES, SampleDataset, write_sample_dataset
from runmesh.cli.dev_info import DevInfo
from runmesh.cli.errors import CliError
from runmesh.cli.gateway_client import GatewayClient
from runmesh.cli.watch import watch_run

DEMO_TIMEOUT_S = 600.0
SAMPLE_FOLDER = "sample"  # in the demo storage, next to the exports
_PLUGINS = ("runmesh-upload", "runmesh-to-task", "runmesh-export", "runmesh-train")


@dataclass(slots=True)
class StepResult:
    """One run of the chain, as the summary shows it."""

    step: str
    run_id: str
    state: str
    seconds: float
    outcome: str


@dataclass(slots=True)
class DemoChain:
    """The catalog rows and runs of one demo; each step reads what the earlier ones made."""

    api: GatewayClient
    console: Console
    dataset: SampleDataset
    stamp: str
    ids: dict[str, str] = field(default_factory=dict)
    results: list[StepResult] = field(default_factory=list)

    async def create(self, path: str, body: dict[str, Any]) -> str:
        """POST a catalog row; its id."""
        row: dict[str, Any] = await self.api.request("POST", path, json=body)
        return str(row["id"])

    async def run(
        self,
        step: str,
        category: str,
        action: str,
        params: dict[str, Any],
        outcome: Callable[[dict[str, Any]], str],
    ) -> dict[str, Any]:
        """Submit a run, follow it live, record it; `CliError` if it does not succeed."""
        self.console.rule(f"[bold]{step}[/] ({category}.{action})")
        began = time.monotonic()
        submitted = await self.api.submit(
            {"category": category, "action": action, "params": params}
        )
        run_id = str(submitted["id"])
        await watch_run(self.api, run_id, self.console)
        run = await self.api.run(run_id)
        state = str(run.get("state"))
        result = run.get("result") or {}
        summary = outcome(result) if state == "succeeded" else _error_text(run)
        self.results.append(StepResult(step, run_id, state, time.monotonic() - began, summary))
        if state != "succeeded":
            raise CliError(f"demo step {step!r} ended {state}: {summary}")
        return {"id": run_id, **result}


async def run_demo(info: DevInfo, out: TextIO, *, data_dir: Path) -> int:
    """Run the demo chain through the gateway, rendering each run live; 0 if every step
    succeeded."""
    console = Console(file=out)
    dataset = await asyncio.to_thread(write_sample_dataset, data_dir / SAMPLE_FOLDER)
    console.print(
        f"demo: {dataset.images} sample images with {dataset.boxes} boxes in {dataset.root}",
        highlight=False,
    )
    async with GatewayClient(info.gateway_url, info.token) as api:
        chain = DemoChain(api, console, dataset, stamp=time.strftime("%Y%m%d-%H%M%S"))
        try:
            async with asyncio.timeout(DEMO_TIMEOUT_S):
                await _wait_for_plugins(api)
                await _run_chain(chain)
            status = 0
        except (CliError, TimeoutError) as exc:
            console.print(f"[red]demo stopped:[/] {exc or 'timed out'}", highlight=False)
            status = 1
    console.print(_summary(chain.results))
    if "project" in chain.ids:
        console.print(
            f"Demo project: {chain.ids['project']}   storage: {chain.ids['storage']} "
            f"({dataset.root.parent})",
            highlight=False,
        )
    console.print(f"Dashboard: {info.gateway_url}/   (token {info.token})", highlight=False)
    return status


async def _run_chain(chain: DemoChain) -> None:
    stamp = chain.stamp
    storage = chain.ids["storage"] = await chain.create(
        "/v1/storages",
        {
            "name": f"demo-{stamp}",
            "provider": "file",
            "config": {"root": str(chain.dataset.root.parent)},
        },
    )
    collection = await chain.create(
        "/v1/data-collections",
        {
            "name": f"demo-{stamp}",
            "file_specifications": [
                {"name": "image", "required": True, "extensions": [".png"], "is_primary": True},
                {"name": "label", "required": True, "extensions": [".json"]},
            ],
        },
    )
    await chain.run(
        "upload",
        "upload",
        "upload",
        {
            "name": f"demo {stamp}",
            "storage": storage,
            "data_collection": collection,
            "path": SAMPLE_FOLDER,
        },
        _uploaded,
    )
    project = chain.ids["project"] = await chain.create(
        "/v1/projects",
        {
            "name": f"demo-{stamp}",
            "data_collection_id": collection,
            "annotation_type": "image_detection",
            "label_schema": {"classes": [{"id": i, "name": n} for i, n in enumerate(CLASSES)]},
        },
    )
    await chain.run(
        "to_task (file)",
        "pre_annotation",
        "to_task",
        {"name": f"demo {stamp}", "project": project, "target_specification_name": "label"},
        lambda r: f"{_count(r, 'annotated')} tasks from label files",
    )
    exports = {}
    for output_format in ("coco", "yolo"):
        exports[output_format] = await chain.run(
            f"export ({output_format.upper()})",
            "export",
            "export",
            {
                "name": f"demo-{stamp}-{output_format}",
                "storage": storage,
                "target": "task",
                "filter": {"project": project},
                "path": "exports",
                "extra_params": {"output_format": output_format},
            },
            lambda r: f"{_count(r, 'items', 'exported')} items → {r.get('path', '?')}",
        )
    trained = await chain.run(
        "train",
        "neural_net",
        "train",
        {
            "name": f"demo-{stamp}",
            "dataset": {"export_run": exports["coco"]["id"]},
            "hyperparameters": {"epochs": 60, "learning_rate": 0.003, "negatives_per_image": 6},
            "validation_split": 0.25,
            "seed": 7,
        },
        lambda r: f"model {str(r.get('model_id', '?'))[:8]}, {_validation(r)}",
    )
    await chain.run(
        "to_task (inference)",
        "pre_annotation",
        "to_task",
        {
            "name": f"demo {stamp} predictions",
            "project": project,
            "method": "inference",
            "model": trained["model_id"],
            "confidence_threshold": 0.5,
            "overwrite": True,
        },
        lambda r: f"{_count(r, 'annotated')} tasks by the model",
    )


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


def _summary(results: list[StepResult]) -> Table:
    table = Table(title="runmesh demo", title_justify="left")
    for column in ("step", "run", "state", "time"):
        table.add_column(column, no_wrap=True)
    table.add_column("outcome")
    for result in results:
        colour = "green" if result.state == "succeeded" else "red"
        table.add_row(
            result.step,
            result.run_id[:8],
            f"[{colour}]{result.state}[/]",
            f"{result.seconds:.1f}s",
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
