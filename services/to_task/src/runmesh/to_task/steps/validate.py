"""Validate: open the database; the project, its collection and both file specs must exist."""

from __future__ import annotations

from runmesh.catalog import annotation, repository, trained_models
from runmesh.catalog.repository import DataCollectionRow
from runmesh.catalog.tenant_storages import tenant_uris
from runmesh.pipeline.resources import open_catalog_pool
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
            # Units' files and the predictions are read only through the tenant's storages.
            ctx.uris = await tenant_uris(conn, ctx.tenant, ctx.settings.storage)
        if collection is None:
            raise ToTaskConfigError(
                f"data collection {project.data_collection_id} of project {project.id} not found"
            )
        primary = collection.primary
        if primary is None:
            raise ToTaskConfigError(
                f"data collection {collection.name!r} has no primary file specification: "
                "the image that the annotations belong to"
            )
        ctx.collection = collection
        ctx.primary_spec = primary.name
        ctx.classes = [
            label.name for label in sorted(project.label_schema.classes, key=lambda c: c.id)
        ]
        if params.method == "file":
            _check_target(ctx, collection, primary.name)
        else:
            await _check_model(ctx)


def _check_target(ctx: ToTaskContext, collection: DataCollectionRow, primary: str) -> None:
    """The annotation files' spec exists and is not the image's."""
    specs = [spec.name for spec in collection.file_specifications]
    target = ctx.params.target_specification_name
    if target not in specs:
        raise ToTaskConfigError(
            f"target_specification_name {target!r} is not a file specification of data "
            f"collection {collection.name!r} (it has {', '.join(map(repr, specs))})"
        )
    if target == primary:
        raise ToTaskConfigError(
            f"target_specification_name {target!r} is the primary (image) specification; "
            "name the specification holding the annotation files"
        )


async def _check_model(ctx: ToTaskContext) -> None:
    """The model exists and every class it predicts is in the project's label schema."""
    assert ctx.pool is not None and ctx.params.model is not None
    async with ctx.pool.acquire(timeout=30) as conn:
        model = await trained_models.get_model(conn, ctx.tenant, ctx.params.model)
    if model is None:
        raise ToTaskConfigError(f"model {ctx.params.model} not found")
    missing = [name for name in model.classes if name not in ctx.classes]
    if missing:
        raise ToTaskConfigError(
            f"model {model.name!r} predicts classes the project's label schema lacks: "
            + ", ".join(map(repr, missing))
        )
