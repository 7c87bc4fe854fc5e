"""Initialize: resolve the classes of the label schema and count the items to export."""

from __future__ import annotations

from runmesh.catalog import annotation
from runmesh.catalog.errors import CatalogNotFoundError
from runmesh.export.context import ExportContext
from runmesh.export.errors import ExportConfigError, NothingToExportError
from runmesh.export.steps.base import Step


class Initialize(Step):
    """Everything later steps need, checked up front with errors that name the bad id (the
    destination storage was opened before it ran)."""

    name = "initialize"

    async def execute(self, ctx: ExportContext) -> None:
        """Resolve the label schema's classes and count the items; none is an error."""
        params = ctx.params
        async with ctx.pool.acquire(timeout=30) as conn:
            try:
                ctx.classes = await annotation.export_classes(
                    conn, ctx.tenant, params.target, params.filter
                )
            except CatalogNotFoundError as exc:
                raise ExportConfigError(str(exc)) from exc
            ctx.total = await annotation.count_export_items(
                conn, ctx.tenant, params.target, params.filter
            )
        if ctx.total == 0:
            ctx.run.log_message_with_code("NO_RESULTS_FOUND", params.target, params.filter)
            raise NothingToExportError(
                f"no {params.target} matches the filter {params.filter}: nothing to export"
            )
        ctx.run.log_message_with_code("RESULTS_RETRIEVED", ctx.total, params.target)
