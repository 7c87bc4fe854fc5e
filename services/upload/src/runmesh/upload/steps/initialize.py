"""Initialize: open the database, resolve the storages and the collection's specifications."""

from __future__ import annotations

import asyncio
import logging

from runmesh.catalog import repository
from runmesh.pipeline.resources import open_catalog_pool
from runmesh.storage import (
    StorageError,
    StoragePolicyError,
    open_storage,
    platform_storage,
)
from runmesh.upload.context import UploadContext
from runmesh.upload.errors import UploadConfigError
from runmesh.upload.steps.base import Step

log = logging.getLogger(__name__)

_DELETE_CONCURRENCY = 16


class Initialize(Step):
    """Everything later steps need, checked up front with errors that name the bad id.

    Its rollback removes all the run stored: it runs whichever step failed, as the steps
    that write may not have been reached by this attempt but by an earlier one.
    """

    name = "initialize"

    async def execute(self, ctx: UploadContext) -> None:
        """Connect, then resolve destination, source and collection."""
        params = ctx.params
        ctx.pool = await open_catalog_pool(ctx.settings)
        async with ctx.pool.acquire(timeout=30) as conn:
            destination = None
            if params.destination is not None:
                destination = await repository.get_storage(conn, ctx.tenant, params.destination)
                if destination is None:
                    raise UploadConfigError(f"destination storage {params.destination} not found")
            source = await repository.get_storage(conn, ctx.tenant, params.storage)
            collection = await repository.get_collection(conn, ctx.tenant, params.data_collection)
        # The destination before the checks below: if one of them fails, the rollback needs
        # it to delete what an earlier attempt of this run stored.
        try:
            ctx.destination = (
                open_storage(
                    destination.provider,
                    destination.config,
                    ctx.settings.storage,
                    tenant=ctx.tenant,
                )
                if destination is not None
                else platform_storage(ctx.settings.s3)
            )
        except StoragePolicyError as exc:
            raise exc.naming("the destination storage") from None
        except StorageError as exc:
            raise UploadConfigError(f"cannot open the destination storage: {exc}") from exc
        if source is None:
            raise UploadConfigError(f"storage {params.storage} not found")
        if collection is None:
            raise UploadConfigError(f"data collection {params.data_collection} not found")
        ctx.collection = collection
        ctx.specs = {spec.name: spec for spec in collection.file_specifications}
        self._check_assets(ctx)
        try:
            ctx.source = open_storage(
                source.provider, source.config, ctx.settings.storage, tenant=ctx.tenant
            )
        except StoragePolicyError as exc:
            raise exc.naming(f"storage {source.name!r}") from None
        except StorageError as exc:
            raise UploadConfigError(f"cannot open the source storage: {exc}") from exc
        ctx.run.log_message(
            f"uploading into collection {collection.name!r} "
            f"({len(ctx.specs)} file specifications) from storage {source.name!r}"
        )

    async def rollback(self, ctx: UploadContext) -> None:
        """Delete the run's data units, then every object under its prefix (any attempt's).

        Units first, so that none is left pointing at a deleted object. The prefix
        `<tenant>/<collection>/<run_id>/` is the run's alone, so it is listed rather than
        rebuilt from this attempt's files, which miss what an earlier attempt stored.
        """
        if ctx.pool is not None:
            async with ctx.pool.acquire(timeout=30) as conn:
                removed = await repository.delete_data_units_of_run(conn, ctx.tenant, ctx.run_id)
            if removed:
                ctx.run.log_message(f"rollback: removed {removed} data units", level="warning")
        if ctx.destination is None:
            return
        destination = ctx.destination
        paths = [
            info.path async for info in destination.list(ctx.destination_prefix, recursive=True)
        ]
        limit = asyncio.Semaphore(_DELETE_CONCURRENCY)
        failures = 0

        async def delete(path: str) -> None:
            nonlocal failures
            async with limit:
                try:
                    await destination.delete(path)
                except StorageError as exc:
                    failures += 1
                    log.warning("rollback could not delete %s: %s", path, exc)

        await asyncio.gather(*(delete(path) for path in paths))
        if paths:
            ctx.run.log_message(
                f"rollback: deleted {len(paths) - failures} of {len(paths)} objects under "
                f"{ctx.destination_prefix}",
                level="warning",
            )

    @staticmethod
    def _check_assets(ctx: UploadContext) -> None:
        assets = ctx.params.assets
        if assets is None:
            return
        unknown = sorted(set(assets) - set(ctx.specs))
        if unknown:
            raise UploadConfigError(
                f"assets name unknown file specifications {unknown}; "
                f"the collection has {sorted(ctx.specs)}"
            )
        missing = sorted(
            name for name, spec in ctx.specs.items() if spec.required and name not in assets
        )
        if missing:
            raise UploadConfigError(f"assets lack the required file specifications {missing}")
