"""Typed data access to schema `catalog`; every function takes the tenant first and is
scoped by it, so another tenant's rows are neither read nor written.

`conn` is an asyncpg connection or pool. JSON goes in and out as text, so the functions work
whether or not the connection has the JSON codecs of `runmesh.core.db.create_pool`.

This module gathers the storages, data collections and data units under one name
(`repository.create_storage`, `repository.upsert_data_units`); each lives in the module of
its table (`storages`, `data_collections`, `data_units`), and what they share in `queries`.
"""

from __future__ import annotations

from runmesh.catalog.data_collections import (
    DataCollectionRow,
    FileSpecification,
    create_collection,
    get_collection,
    list_collections,
)
from runmesh.catalog.data_units import (
    DataFile,
    DataUnitRow,
    NewDataUnit,
    RegisteredDataUnits,
    delete_data_units_of_run,
    get_data_unit,
    list_data_units,
    register_data_units,
    upsert_data_units,
)
from runmesh.catalog.queries import Executor, fetch_newest_first, fetch_tenant_row
from runmesh.catalog.storages import (
    StorageProvider,
    StorageRow,
    create_storage,
    get_storage,
    list_storages,
)

__all__ = [
    "DataCollectionRow",
    "DataFile",
    "DataUnitRow",
    "Executor",
    "FileSpecification",
    "NewDataUnit",
    "RegisteredDataUnits",
    "StorageProvider",
    "StorageRow",
    "create_collection",
    "create_storage",
    "delete_data_units_of_run",
    "fetch_newest_first",
    "fetch_tenant_row",
    "get_collection",
    "get_data_unit",
    "get_storage",
    "list_collections",
    "list_data_units",
    "list_storages",
    "register_data_units",
    "upsert_data_units",
]
