"""Typed step inputs and outputs, checked when a pipeline is submitted (no I/O).

An action may declare, in its plugin's `config.yaml` (and so in its manifest), what its params
take and what its run gives:

- `inputs`: a param path (`dataset.export_run`, `model`) → the types it accepts
  (`[dataset:coco, dataset:yolo]`; `dataset:*` accepts any dataset);
- `outputs`: `run` (what `${{ steps.S.run_id }}` stands for) or a result key (`model_id`) →
  the type it gives. A type may take a value of the step's own params:
  `dataset:{params.extra_params.output_format|dm}` is `dataset:coco` for a step exporting
  COCO, and `dataset:dm` where the param is not given.

An action that declares outputs declares all the result keys it gives, so a reference to any
other key of its result is refused before anything runs. Actions that declare nothing are
not checked: their steps' values are checked by the params schema once they run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Final

from runmesh.core.errors import PipelineReferenceError
from runmesh.core.pipelines import (
    OutputReference,
    PipelineSpec,
    output_references,
    step_params,
)

__all__ = [
    "ACCEPTED_TYPE_PATTERN",
    "OUTPUT_TYPE_PATTERN",
    "ActionTypes",
    "TypeProblem",
    "check_types",
    "compatible",
    "output_type",
]

_NAME: Final = r"[a-z][a-z0-9_-]*"
_PLACEHOLDER: Final = re.compile(r"\{params\.([A-Za-z0-9_.-]+)(?:\|([A-Za-z0-9_-]*))?\}")

ACCEPTED_TYPE_PATTERN: Final = rf"^{_NAME}(:[a-z0-9_*.-]+)?$"
"""An accepted type: `kind` or `kind:variant`, the variant may hold `*` (`dataset:*`)."""
_FILLED: Final = r"\{params\.[A-Za-z0-9_.-]+(\|[A-Za-z0-9_-]*)?\}"
OUTPUT_TYPE_PATTERN: Final = rf"^{_NAME}(:([a-z0-9_.-]|{_FILLED})+)?$"
"""A given type: `kind` or `kind:variant`, the variant may take a param's value:
`dataset:{params.extra_params.output_format|dm}`."""


@dataclass(frozen=True, slots=True)
class ActionTypes:
    """What one step's action declares: its label for messages, its inputs and outputs."""

    label: str
    """`category.action`, e.g. `export.export`."""
    inputs: Mapping[str, Sequence[str]] = field(default_factory=dict)
    outputs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TypeProblem:
    """A step fed an output it cannot take, or reading an output its source does not give."""

    step: str
    location: tuple[str | int, ...]
    """Where in the step's params."""
    message: str


def check_types(
    spec: PipelineSpec, params: Mapping[str, Any], actions: Mapping[str, ActionTypes]
) -> list[TypeProblem]:
    """Every reference whose source step does not give that output, or gives a type the
    reading step's input does not accept, in definition order.

    Args:
        spec: the validated pipeline.
        params: its params, defaults merged (JSON values: Any).
        actions: each step's action declarations, by step name (a step missing here is not
            checked).
    """
    problems = []
    for name in spec.steps:
        for reference in output_references(spec, name):
            source = actions.get(reference.step)
            if source is None:
                continue
            message = _problem(spec, params, name, actions.get(name), reference, source)
            if message is not None:
                problems.append(TypeProblem(name, reference.location, message))
    return problems


def _problem(
    spec: PipelineSpec,
    params: Mapping[str, Any],
    name: str,
    reader: ActionTypes | None,
    reference: OutputReference,
    source: ActionTypes,
) -> str | None:
    """What is wrong with step `name` reading `reference` (from `source`'s step), or None."""
    read = "run_id" if reference.output == "run" else f"result.{reference.output}"
    where = f"steps.{reference.step}.{read}"
    if source.outputs and reference.output != "run" and reference.output not in source.outputs:
        keys = ", ".join(sorted(set(source.outputs) - {"run"})) or "none"
        return (
            f"step {name!r} reads {where}, which step {reference.step!r} ({source.label}) "
            f"does not give (its result keys: {keys})"
        )
    if reader is None or not reference.whole:
        return None
    path = ".".join(str(part) for part in reference.location)
    accepted = reader.inputs.get(path)
    template = source.outputs.get(reference.output)
    if not accepted or template is None:
        return None
    given = output_type(template, _params_of(spec, reference.step, params))
    if given is None or compatible(given, accepted):
        return None
    return (
        f"step {name!r}: input {path} of {reader.label} takes {' or '.join(accepted)}, "
        f"but {where} is {given} (from step {reference.step!r}, {source.label})"
    )


def compatible(given: str, accepted: Sequence[str]) -> bool:
    """Whether a type is one of the accepted ones (`*` in an accepted type matches any text)."""
    return any(fnmatchcase(given, pattern) for pattern in accepted)


def output_type(template: str, params: Mapping[str, Any]) -> str | None:
    """A declared output type with its `{params.PATH|DEFAULT}` placeholders filled from the
    step's params; None when a value is not known yet (it comes from an earlier step) or is
    not text."""
    unknown = False

    def fill(match: re.Match[str]) -> str:
        nonlocal unknown
        value: Any = params
        for key in match[1].split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None and match[2] is not None:
            return match[2]
        if not isinstance(value, str) or "${{" in value:
            unknown = True
            return ""
        return value

    filled = _PLACEHOLDER.sub(fill, template)
    return None if unknown else filled


def _params_of(spec: PipelineSpec, step: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
    """A step's params with the pipeline's params put in; as written where they also read an
    earlier step's output (those values are not known before it ran)."""
    try:
        return step_params(spec, step, params, {})
    except PipelineReferenceError:
        return spec.steps[step].params
