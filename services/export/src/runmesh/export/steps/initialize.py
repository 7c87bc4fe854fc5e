"""Initialize: open the database, resolve the destination, the classes and the item count."""

from __future__ import annotations

from runmesh.catalog import annotation, repository
from runmesh.catalog.errors import CatalogNotFoundError
from runmesh.catalog.tenant_storages import tenant_uris
from runmesh.export.context import ExportContext
from runmesh.export.errors import ExportConfigError, NothingToExportError
from runmesh.export.steps.base import Step
from runmesh.pipeline.resources import open_catalog_pool
from runmesh.storage import StorageError, StoragePolicyError, open_storage


class Initialize(Step):
    """Everything later steps need, checked up front with errors that name the bad id."""

    name = "initialize"

    async def execute(self, ctx: ExportContext) -> None:
        """Connect, resolve the destination storage and the label schema, count the items."""
        params = ctx.params
        ctx.run.log_message_with_code("EXPORT_STARTED", params.name, params.target)
        ctx.pool = await open_catalog_pool(ctx.settings)
        async with ctx.pool.acquire(timeout=30) as conn:
            storage = await repository.get_storage(conn, ctx.tenant, params.storage)
            if storage is None:
                raise ExportConfigError(f"storage {params.storage} not found")
            try:
                ctx.classes = await annotation.export_classes(
                    conn, ctx.tenant, params.target, params.filter
                )
            except CatalogNotFoundError as exc:
                raise ExportConfigError(str(exc)) from exc
            ctx.total = await annotation.count_export_items(
                conn, ctx.tenant, params.target, params.filter
            )
            # Original files are read only through the tenant's own storages.
            ctx.uris = await tenant_uris(conn, ctx.tenant, ctx.settings.storage)
        if ctx.total == 0:
            ctx.run.log_message_with_code("NO_RESULTS_FOUND", params.target, params.filter)
            raise NothingToExportError(
                f"no {params.target} matches the filter {params.filter}: nothing to export"
            )
        ctx.run.log_message_with_code("RESULTS_RETRIEVED", ctx.total, params.target)
        try:
            ctx.destination = open_storage(
                storage.provider, storage.config, ctx.settings.storage, tenant=ctx.tenant
            )
        except StoragePolicyError as exc:
            raise exc.naming(f"storage {storage.name!r}") from None
        except StorageError as exc:
            raise ExportConfigError(f"cannot open storage {storage.name!r}: {exc}") from exc
        ctx.destination_name = storage.name
