"""Pipeline definitions: runs of several categories chained as a DAG of named steps.

The pure definition layer of a pipeline (no I/O): the wire model a submission is validated
against (REST bodies now, Kafka producers later), its static checks, and the substitution of
`${{ params.NAME }}`, `${{ steps.STEP.result.KEY }}` and `${{ steps.STEP.run_id }}` references
in a step's params once the steps it needs have succeeded. docs/pipelines.md describes it for users.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runmesh.core.errors import PipelineReferenceError
from runmesh.core.events import JsonObject
from runmesh.core.pipeline_graph import check_needs, find_cycle
from runmesh.core.run_policy import (
    MAX_ATTEMPTS_BOUND,
    RETRY_BACKOFF_BOUND_S,
    Placement,
    Priority,
    Resources,
)

__all__ = [
    "MAX_STEPS",
    "STEP_NAME_PATTERN",
    "OutputReference",
    "PipelineReferenceError",
    "PipelineSpec",
    "PipelineStep",
    "missing_params",
    "output_references",
    "step_params",
]

STEP_NAME_PATTERN: Final = r"^[a-z][a-z0-9_-]{0,62}$"
"""What a step name looks like: it becomes part of references, run labels and SQL rows."""

MAX_STEPS: Final = 100
"""The most steps one pipeline may have."""

_STEP_NAME: Final = re.compile(STEP_NAME_PATTERN)
# Anything that opens like a reference, up to its closing braces or the end of the string: an
# unclosed `${{` is reported too, rather than silently passed on as text.
_CANDIDATE: Final = re.compile(r"\$\{\{(?P<body>.*?)(?P<close>\}\}|\Z)", re.DOTALL)
_SEGMENT: Final = r"[A-Za-z0-9_-]+"
_REFERENCE: Final = re.compile(
    rf"\s*(?:params\.(?P<param>{_SEGMENT})|pipeline\.(?P<pipeline>run_id|workspace)"
    rf"|steps\.(?P<step>{_SEGMENT})\.(?:result(?P<path>(?:\.{_SEGMENT})+)|(?P<run_id>run_id)))\s*"
)
_SYNTAX_HINT: Final = (
    "write ${{ params.NAME }}, ${{ steps.STEP.result.KEY }}, ${{ steps.STEP.run_id }}, "
    "${{ pipeline.run_id }} or ${{ pipeline.workspace }}"
)
_LISTED_KEYS: Final = 20  # keys named in an error message: enough to spot a typo, not a wall


class PipelineStep(BaseModel):
    """One step of a pipeline: a run of `action` in `category`, after the steps it `needs`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str = Field(
        min_length=1, max_length=200, description="Service category, e.g. upload, export"
    )
    action: str = Field(min_length=1, max_length=200, description="The plugin action to run")
    plugin: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="`code` or `code@version`; unset = the category's built-in plugin",
    )
    params: JsonObject = Field(
        default_factory=dict,
        description="The action's params; any string in them may hold `${{ ... }}` references",
    )
    needs: list[str] = Field(
        default_factory=list,
        description="Steps that must succeed before this one starts",
        json_schema_extra={"uniqueItems": True},
    )
    timeout_s: float | None = Field(
        default=None, gt=0, description="Cancel the step's run after this many seconds of running"
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ATTEMPTS_BOUND,
        description="Starts of the step's run before it fails (at most RUNMESH_MAX_ATTEMPTS)",
    )
    retry_backoff_s: float | None = Field(
        default=None,
        ge=0,
        le=RETRY_BACKOFF_BOUND_S,
        description="Seconds before the step's run is tried again after a retryable failure, "
        "doubled for each later attempt (at most RUNMESH_RETRY_BACKOFF_MAX_S)",
    )
    placement: Placement | None = Field(
        default=None, description="Pools and labels of the workers the step's run needs"
    )
    priority: Priority | None = Field(
        default=None, description="The step's run's priority (1-9); unset: the pipeline's"
    )
    resources: Resources | None = Field(
        default=None, description="What the step's run needs of its worker (`lock_all`)"
    )


class PipelineSpec(BaseModel):
    """A pipeline: named steps whose `needs` form a DAG, and the params its steps reference."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, description="What the pipeline is, for people")
    description: str = Field(default="", max_length=2000)
    params: JsonObject = Field(
        default_factory=dict,
        description="Pipeline params with their defaults; a submission may override or add",
    )
    priority: Priority | None = Field(
        default=None, description="Priority (1-9) of the steps' runs that set none; unset: 5"
    )
    steps: dict[str, PipelineStep] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The steps by name, in definition order",
        json_schema_extra={"propertyNames": {"pattern": STEP_NAME_PATTERN}},
    )

    @model_validator(mode="after")
    def _check_graph_and_references(self) -> PipelineSpec:
        """Names, needs, cycles, then references: each check relies on the ones before it."""
        names = list(self.steps)
        for name in names:
            if not _STEP_NAME.fullmatch(name):
                raise ValueError(
                    f"step name {name!r} is not valid: it must start with a lowercase letter "
                    "and hold only a-z, 0-9, _ and - (at most 63 characters)"
                )
        for name, step in self.steps.items():
            check_needs(name, step.needs, names)
        cycle = find_cycle({name: step.needs for name, step in self.steps.items()})
        if cycle is not None:
            raise ValueError(f"steps {' → '.join(cycle)} form a cycle")
        for name, step in self.steps.items():
            ancestors = self.ancestors(name)
            for reference in _step_references(name, step.params):
                if reference.kind == "steps" and reference.name not in ancestors:
                    raise ValueError(_unneeded_reference(name, reference, names))
        return self

    def order(self) -> list[str]:
        """Every step once, each after all it needs; among ready steps, definition order first."""
        placed: list[str] = []
        done: set[str] = set()
        remaining = list(self.steps)
        while remaining:
            # The validator rejected cycles, so some remaining step is always ready.
            ready = next(n for n in remaining if all(d in done for d in self.steps[n].needs))
            remaining.remove(ready)
            placed.append(ready)
            done.add(ready)
        return placed

    def ancestors(self, step: str) -> set[str]:
        """Every step `step` needs, directly or through others (KeyError for an unknown step)."""
        found: set[str] = set()
        pending = list(self.steps[step].needs)
        while pending:
            need = pending.pop()
            if need not in found:
                found.add(need)
                pending.extend(self.steps[need].needs)
        return found

    def dependants(self, step: str) -> set[str]:
        """Every step that needs `step`, directly or through others (KeyError if unknown)."""
        if step not in self.steps:
            raise KeyError(step)
        return {name for name in self.steps if step in self.ancestors(name)}

    def roots(self) -> list[str]:
        """The steps that need none, in definition order: they start first."""
        return [name for name, step in self.steps.items() if not step.needs]

    def referenced_params(self) -> set[str]:
        """The names of the pipeline params any step references."""
        return {
            reference.name
            for name, step in self.steps.items()
            for reference in _step_references(name, step.params)
            if reference.kind == "params"
        }


@dataclass(frozen=True, slots=True)
class OutputReference:
    """A place in a step's params that reads an earlier step's output."""

    location: tuple[str | int, ...]
    """Where in the step's params: keys and list indexes, e.g. `("dataset", "export_run")`."""
    step: str
    """The step read."""
    output: str
    """`run` for `steps.S.run_id`, else the first key of `steps.S.result.KEY...`."""
    whole: bool
    """The value is this reference alone (so it takes the output's own value and type) and
    names the output itself, not a key inside it."""


def output_references(spec: PipelineSpec, step: str) -> list[OutputReference]:
    """Every reference to an earlier step's output in `step`'s params (KeyError if unknown)."""
    found = []
    for location, text in _located_strings(spec.steps[step].params, ()):
        references = _parse(text)
        alone = len(references) == 1 and references[0][0].span() == (0, len(text))
        for _, reference in references:
            if reference.kind != "steps":
                continue
            output = "run" if reference.run_id else reference.path[0]
            whole = alone and (reference.run_id or len(reference.path) == 1)
            found.append(OutputReference(location, reference.name, output, whole))
    return found


def _located_strings(
    value: Any, location: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string inside a JSON value (free-form: Any), with its location as a tuple;
    ValueError for an object key that holds a reference (keys are never substituted)."""
    if isinstance(value, str):
        yield location, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "${{" in str(key):
                # Say so rather than leave a reference unresolved.
                where = _where(location)
                raise ValueError(f"{where}: key {key!r}: a reference may only be in a value")
            yield from _located_strings(item, (*location, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _located_strings(item, (*location, index))


def _where(location: tuple[str | int, ...]) -> str:
    """A location in a step's params as people read it, e.g. `params.a[0]`."""
    return "params" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in location
    )


def missing_params(spec: PipelineSpec, given: Mapping[str, Any]) -> list[str]:
    """Referenced params with neither a default in `spec.params` nor a value in `given`, sorted.

    `given` is a submission's params: any JSON values (hence Any). A submission missing one
    is refused before any step runs, rather than failing the step that needs it.
    """
    return sorted(
        name for name in spec.referenced_params() if name not in spec.params and name not in given
    )


def step_params(
    spec: PipelineSpec,
    step: str,
    params: Mapping[str, Any],
    results: Mapping[str, Mapping[str, Any]],
    run_ids: Mapping[str, str] | None = None,
    pipeline: Mapping[str, str] | None = None,
) -> JsonObject:
    """`step`'s params with every reference replaced by the value it names.

    Args:
        spec: the validated pipeline.
        step: the step about to run (KeyError if `spec` has none of that name).
        params: the pipeline's params: `spec.params` merged with the submission's.
        results: the result object of each finished step, by step name (JSON values: Any).
        run_ids: the run id of each step that `steps.STEP.run_id` may name, by step name.
        pipeline: the pipeline run's own values: `run_id` and `workspace` (its URI).

    A string that is exactly one reference becomes the value itself (any JSON type, copied);
    references inside a longer string become text (a string as is, anything else as compact
    JSON). The values put in are not searched for references again.

    Raises:
        PipelineReferenceError: a referenced param is not in `params`, a referenced step has
            no result, or a result has no value at the path referenced.
    """
    inputs = _Inputs(params, results, run_ids or {}, pipeline or {})
    return {key: _substitute(step, value, inputs) for key, value in spec.steps[step].params.items()}


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What references read: the pipeline's params, earlier steps' results and run ids."""

    params: Mapping[str, Any]
    results: Mapping[str, Mapping[str, Any]]
    run_ids: Mapping[str, str]
    pipeline: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Reference:
    """A parsed `${{ ... }}`: a pipeline param or value, or a path into a step's result."""

    kind: Literal["params", "steps", "pipeline"]
    name: str
    path: tuple[str, ...] = ()
    run_id: bool = False  # `steps.a.run_id`: the step's run, not its result

    @property
    def text(self) -> str:
        """The reference as written, without braces or spaces: `steps.a.result.model_id`."""
        if self.kind in ("params", "pipeline"):
            return f"{self.kind}.{self.name}"
        if self.run_id:
            return f"steps.{self.name}.run_id"
        return ".".join((f"steps.{self.name}.result", *self.path))


def _parse(text: str) -> list[tuple[re.Match[str], _Reference]]:
    """The references in `text`, with where each is; ValueError on anything reference-like
    that is not one."""
    found = []
    for match in _CANDIDATE.finditer(text):
        syntax = _REFERENCE.fullmatch(match["body"]) if match["close"] else None
        if syntax is None:
            raise ValueError(f"{match[0]!r} is not a reference: {_SYNTAX_HINT}")
        if syntax["param"] is not None:
            reference = _Reference("params", syntax["param"])
        elif syntax["pipeline"] is not None:
            reference = _Reference("pipeline", syntax["pipeline"])
        elif syntax["run_id"] is not None:
            reference = _Reference("steps", syntax["step"], run_id=True)
        else:
            reference = _Reference("steps", syntax["step"], tuple(syntax["path"][1:].split(".")))
        found.append((match, reference))
    return found


def _step_references(step: str, params: JsonObject) -> Iterator[_Reference]:
    """Every reference in a step's params; ValueError naming the step and the bad text."""
    try:
        for location, text in _located_strings(params, ()):
            try:
                references = _parse(text)
            except ValueError as exc:
                raise ValueError(f"{_where(location)}: {exc}") from None
            for _, reference in references:
                yield reference
    except ValueError as exc:
        raise ValueError(f"step {step!r}: {exc}") from None


def _unneeded_reference(step: str, reference: _Reference, names: Sequence[str]) -> str:
    """Why `step` may not reference `reference`'s step, and what to do about it."""
    target = reference.name
    if target == step:
        return f"step {step!r} references its own result (steps.{target}): it has none yet"
    if target not in names:
        return (
            f"step {step!r} references steps.{target}, which is not a step of this pipeline "
            f"(its steps: {', '.join(names)})"
        )
    return f"step {step!r} references steps.{target}, which it does not need (add it to needs)"


def _substitute(step: str, value: Any, inputs: _Inputs) -> Any:
    """`value` (free-form JSON: Any) with its references replaced, as a new structure."""
    if isinstance(value, str):
        references = _parse(value)
        if len(references) == 1 and references[0][0].span() == (0, len(value)):
            return copy.deepcopy(_lookup(step, references[0][1], inputs))
        if not references:
            return value
        pieces: list[str] = []
        end = 0
        for match, reference in references:
            pieces += [
                value[end : match.start()],
                _as_text(_lookup(step, reference, inputs)),
            ]
            end = match.end()
        return "".join([*pieces, value[end:]])
    if isinstance(value, Mapping):
        return {key: _substitute(step, item, inputs) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(step, item, inputs) for item in value]
    return value


def _lookup(step: str, reference: _Reference, inputs: _Inputs) -> Any:
    """The value `reference` names (JSON: Any); PipelineReferenceError naming what is missing."""

    def missing(why: str) -> PipelineReferenceError:
        message = f"step {step!r}: {reference.text} {why}"
        return PipelineReferenceError(message, step=step, reference=reference.text)

    params, results = inputs.params, inputs.results
    if reference.kind == "params":
        if reference.name not in params:
            raise missing(
                f"has no value: the pipeline has no default for it and none was given "
                f"(its params: {_listed(params)})"
            )
        return params[reference.name]
    if reference.kind == "pipeline":
        if reference.name not in inputs.pipeline:
            raise missing("is not known yet: the pipeline run has not started")
        return inputs.pipeline[reference.name]
    if reference.run_id:
        if reference.name not in inputs.run_ids:
            raise missing(f"cannot be read: step {reference.name} has no run yet")
        return inputs.run_ids[reference.name]
    if reference.name not in results:
        raise missing(f"cannot be read: step {reference.name} has no result")
    node: Any = results[reference.name]
    where = "result"
    for key in reference.path:
        if isinstance(node, Mapping):
            if key not in node:
                keys = "its keys" if where == "result" else f"{where}'s keys"
                raise missing(f"is not in step {reference.name}'s result ({keys}: {_listed(node)})")
            node = node[key]
        elif isinstance(node, list):
            if not key.isdigit():
                raise missing(f"cannot be read: {where} is a list, indexed by number")
            if int(key) >= len(node):
                raise missing(f"is out of range: {where} has {len(node)} items")
            node = node[int(key)]
        else:
            raise missing(f"cannot be read: {where} is {_kind(node)}, not an object or a list")
        where = f"{where}.{key}"
    return node


def _listed(keys: Mapping[str, Any]) -> str:
    """The first keys of a mapping, comma-separated, for an error message."""
    names = [str(key) for key in list(keys)[: _LISTED_KEYS + 1]]
    if not names:
        return "none"
    if len(names) > _LISTED_KEYS:
        names[_LISTED_KEYS:] = ["…"]
    return ", ".join(names)


def _kind(value: object) -> str:
    """A JSON value's kind, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def _as_text(value: Any) -> str:
    """A value (JSON: Any) as it reads inside a longer string: compact JSON, strings as is."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
