"""What the annotation routes share: their parameters, and catalog errors as 422s."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path, Query

from runmesh.catalog import InvalidReferenceError, UnknownClassError
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import InvalidRequest
from runmesh.gateway.routes.support import Int64

DepsParam = Annotated[Deps, Depends(get_deps)]
ProjectId = Annotated[uuid.UUID, Path(description="The project's id")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=200, description="Items per page")]
AfterId = Annotated[Int64, Query(ge=0, description="Items after this id")]
# Tasks, assignments and items carry their DM documents, so their pages stay moderate.
ItemLimit = Annotated[int, Query(ge=1, le=500, description="Items per page")]

TAG_PROJECTS = "projects"
TAG_TASKS = "tasks"
TAG_GROUND_TRUTH = "ground truth"
NEXT_CURSOR = "Pass as `cursor` for the next page; null = end"
NEXT_AFTER = "Pass as `after_id` for the next page; null = end"


def invalid_reference(exc: InvalidReferenceError) -> InvalidRequest:
    """A 422 whose `errors` point at the body field naming what does not exist."""
    return InvalidRequest(str(exc), errors=[{"loc": ["body", exc.field], "msg": str(exc)}])


def unknown_classes(exc: UnknownClassError) -> InvalidRequest:
    """A 422 whose `errors` point at each annotation with an unknown class."""
    return InvalidRequest(
        str(exc),
        errors=[
            {"loc": ["body", *path], "msg": f"{name!r} is not a class of the label schema"}
            for path, name in exc.problems
        ],
        unknown_classes=list(dict.fromkeys(name for _, name in exc.problems)),
    )
