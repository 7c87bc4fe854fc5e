"""Initialize: open the database, resolve the storages and the collection's specifications."""

from __future__ import annotations

from runmesh.common.catalog import repository
from runmesh.common.db import apply_migrations, create_pool, load_migrations
from runmesh.common.storage import StorageError, open_storage, platform_storage
from runmesh.upload.context import UploadContext
from runmesh.upload.errors import UploadConfigError
from runmesh.upload.steps.base import Step


class Initialize(Step):
    """Everything later steps need, checked up front with errors that name the bad id."""

    name = "initialize"

    async def execute(self, ctx: UploadContext) -> None:
        """Connect, then resolve source, destination and collection."""
        params = ctx.params
        ctx.pool = await create_pool(ctx.settings, min_size=1, max_size=4)
        # Idempotent, under an advisory lock: a worker may start before any gateway did.
        await apply_migrations(ctx.pool, "catalog", load_migrations("runmesh.common.catalog"))
        async with ctx.pool.acquire(timeout=30) as conn:
            source = await repository.get_storage(conn, ctx.tenant, params.storage)
            if source is None:
                raise UploadConfigError(f"storage {params.storage} not found")
            destination = None
            if params.destination is not None:
                destination = await repository.get_storage(conn, ctx.tenant, params.destination)
                if destination is None:
                    raise UploadConfigError(f"destination storage {params.destination} not found")
            collection = await repository.get_collection(conn, ctx.tenant, params.data_collection)
        if collection is None:
            raise UploadConfigError(f"data collection {params.data_collection} not found")
        ctx.collection = collection
        ctx.specs = {spec.name: spec for spec in collection.file_specifications}
        self._check_assets(ctx)
        try:
            ctx.source = open_storage(source.provider, source.config, ctx.settings)
            ctx.destination = (
                open_storage(destination.provider, destination.config, ctx.settings)
                if destination is not None
                else platform_storage(ctx.settings)
            )
        except StorageError as exc:
            raise UploadConfigError(f"cannot open a storage: {exc}") from exc
        ctx.run.log_message(
            f"uploading into collection {collection.name!r} "
            f"({len(ctx.specs)} file specifications) from storage {source.name!r}"
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
