"""The data catalog (schema `catalog`): storages, data collections and data units.

`load_migrations("runmesh.common.catalog")` finds the schema's SQL; `repository` holds the
typed data access and `models` the validation of what users create.
"""

from runmesh.common.catalog.errors import (
    CatalogError,
    CatalogNotFoundError,
    DataUnitConflictError,
    DuplicateNameError,
)
from runmesh.common.catalog.models import (
    DataCollectionCreate,
    FileSpecificationIn,
    FileStorageConfig,
    HttpStorageConfig,
    S3StorageConfig,
    StorageConfig,
    StorageCreate,
    parse_storage_config,
)
from runmesh.common.catalog.repository import (
    DataCollectionRow,
    DataFile,
    DataUnitRow,
    FileSpecification,
    NewDataUnit,
    StorageProvider,
    StorageRow,
)

SCHEMA = "catalog"

__all__ = [
    "SCHEMA",
    "CatalogError",
    "CatalogNotFoundError",
    "DataCollectionCreate",
    "DataCollectionRow",
    "DataFile",
    "DataUnitConflictError",
    "DataUnitRow",
    "DuplicateNameError",
    "FileSpecification",
    "FileSpecificationIn",
    "FileStorageConfig",
    "HttpStorageConfig",
    "NewDataUnit",
    "S3StorageConfig",
    "StorageConfig",
    "StorageCreate",
    "StorageProvider",
    "StorageRow",
    "parse_storage_config",
]
