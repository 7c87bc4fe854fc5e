"""Validate: open the database; the project, its collection and both file specs must exist."""

from __future__ import annotations

from runmesh.common.catalog import annotation, repository
from runmesh.common.run_resources import open_catalog_pool
from runmesh.to_task.context import ToTaskContext
from runmesh.to_task.errors import ToTaskConfigError
from runmesh.to_task.steps.base import Step


class Validate(Step):
    """Everything later steps need, checked up front with errors that name the bad id."""

    name = "validate"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Connect; resolve the project, its data collection, label schema and specs."""
        params = ctx.params
        ctx.run.log_message_with_code("TO_TASK_STARTED", params.name, params.project)
        ctx.pool = await open_catalog_pool(ctx.settings)
        async with ctx.pool.acquire(timeout=30) as conn:
            project = await annotation.get_project(conn, ctx.tenant, params.project)
            if project is None:
                raise ToTaskConfigError(f"project {params.project} not found")
            collection = await repository.get_collection(
                conn, ctx.tenant, project.data_collection_id
            )
        if collection is None:
            raise ToTaskConfigError(
                f"data collection {project.data_collection_id} of project {project.id} not found"
            )
        specs = {spec.name: spec for spec in collection.file_specifications}
        target = params.target_specification_name
        if target not in specs:
            raise ToTaskConfigError(
                f"target_specification_name {target!r} is not a file specification of data "
                f"collection {collection.name!r} (it has {', '.join(map(repr, specs))})"
            )
        primary = collection.primary
        if primary is None:
            raise ToTaskConfigError(
                f"data collection {collection.name!r} has no primary file specification: "
                "the image that the annotations belong to"
            )
        if primary.name == target:
            raise ToTaskConfigError(
                f"target_specification_name {target!r} is the primary (image) specification; "
                "name the specification holding the annotation files"
            )
        ctx.collection = collection
        ctx.primary_spec = primary.name
        ctx.classes = [
            label.name for label in sorted(project.label_schema.classes, key=lambda c: c.id)
        ]
