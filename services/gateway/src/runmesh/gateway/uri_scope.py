"""Which file URIs of data units registered by hand lie outside the tenant's storages: the
gateway refuses them (422) as the services would refuse to read them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from runmesh.catalog.tenant_storages import tenant_storages
from runmesh.core.events import JsonObject
from runmesh.gateway.deps import Deps
from runmesh.storage import StorageError, TenantUris


class _File(Protocol):
    @property
    def uri(self) -> str: ...


class _Unit(Protocol):
    @property
    def files(self) -> Mapping[str, _File]: ...


async def uri_problems(deps: Deps, tenant: str, units: Sequence[_Unit]) -> list[JsonObject]:
    """problem+json `errors` entries for each file whose URI lies in no storage of `tenant`
    (nor in its folders of the platform bucket), or in one the operator's policy refuses."""
    uris = TenantUris(tenant, await tenant_storages(deps.pool, tenant), deps.settings.storage)

    def check() -> list[JsonObject]:  # a file storage's root is resolved on disk
        errors: list[JsonObject] = []
        for index, unit in enumerate(units):
            for name, file in unit.files.items():
                try:
                    uris.check(file.uri)
                except StorageError as exc:
                    loc = ["body", "units", index, "files", name, "uri"]
                    errors.append({"loc": loc, "msg": str(exc)})
        return errors

    return await asyncio.to_thread(check)
