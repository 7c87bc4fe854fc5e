"""Checks of DM documents against a project's label schema: the class names it lacks."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from runmesh.catalog.errors import ClassProblem, UnknownClassError
from runmesh.catalog.models import LabelSchema
from runmesh.dm import DMData

# An error lists at most this many unknown class names or missing ids; more would bury the first.
MAX_PROBLEMS = 100


def shown(values: Sequence[object]) -> str:
    """The first five values, for an error message (" ..." when there are more)."""
    return ", ".join(repr(value) for value in values[:5]) + (" ..." if len(values) > 5 else "")


def unknown_classes(data: DMData, known: Collection[str]) -> list[ClassProblem]:
    """Where the document names a class that is not in `known`, in document order (at most
    100): `(("images", 0, "annotations", 2, "class_name"), "dog")`."""
    problems: list[ClassProblem] = []
    for i, image in enumerate(data.images):
        for j, annotation in enumerate(image.annotations):
            if annotation.class_name not in known:
                path = ("images", i, "annotations", j, "class_name")
                problems.append((path, annotation.class_name))
                if len(problems) == MAX_PROBLEMS:
                    return problems
    return problems


def check_classes(
    documents: Sequence[tuple[tuple[str | int, ...], DMData]],
    schema: LabelSchema,
    project_id: uuid.UUID,
) -> None:
    """`UnknownClassError` when a document (with the path it is at) names a class that the
    project's label schema lacks."""
    known = {label.name for label in schema.classes}
    problems: list[ClassProblem] = []
    for prefix, data in documents:
        problems += [((*prefix, *path), name) for path, name in unknown_classes(data, known)]
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        names = list(dict.fromkeys(name for _, name in problems))
        raise UnknownClassError(
            f"class names not in the label schema of project {project_id}: {shown(names)}",
            problems[:MAX_PROBLEMS],
        )
