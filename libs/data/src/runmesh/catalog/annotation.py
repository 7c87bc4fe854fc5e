"""Typed data access to projects, tasks and assignments, each function scoped by the tenant
it takes first.

Rows are created only under parents of the same tenant, and annotations only with class
names of the project's label schema. `conn` is an asyncpg connection or pool, as in
`repository`; JSON goes in and out as text.

This module gathers them under one name (`annotation.create_tasks`); each lives in the
module of its table (`projects`, `tasks`, `assignments`), the class checks in
`label_classes`.
"""

from __future__ import annotations

from runmesh.catalog.assignments import (
    AssignmentRow,
    create_assignment,
    list_assignments,
)
from runmesh.catalog.errors import (
    CatalogNotFoundError,
    InvalidReferenceError,
    UnknownClassError,
)
from runmesh.catalog.export_items import (
    ExportItem,
    count_export_items,
    export_classes,
    export_label_classes,
    stream_export_items,
)
from runmesh.catalog.label_classes import check_classes, unknown_classes
from runmesh.catalog.projects import (
    ProjectRow,
    create_project,
    get_project,
    list_projects,
)
from runmesh.catalog.tasks import (
    CreatedTasks,
    TaskRow,
    create_tasks,
    get_task,
    list_tasks,
    set_task_data,
    set_task_status,
    set_tasks_data,
)

# The export readers live in `export_items`; exporters find them (and the errors they raise)
# here as well, next to the tables they read.
__all__ = [
    "AssignmentRow",
    "CatalogNotFoundError",
    "CreatedTasks",
    "ExportItem",
    "InvalidReferenceError",
    "ProjectRow",
    "TaskRow",
    "UnknownClassError",
    "check_classes",
    "count_export_items",
    "create_assignment",
    "create_project",
    "create_tasks",
    "export_classes",
    "export_label_classes",
    "get_project",
    "get_task",
    "list_assignments",
    "list_projects",
    "list_tasks",
    "set_task_data",
    "set_task_status",
    "set_tasks_data",
    "stream_export_items",
    "unknown_classes",
]
