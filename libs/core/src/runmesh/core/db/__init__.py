"""PostgreSQL access shared by every process: connection pools and versioned migrations."""

from runmesh.core.db.migrations import (
    Migration,
    MigrationError,
    apply_migrations,
    load_migrations,
)
from runmesh.core.db.pool import create_pool

__all__ = [
    "Migration",
    "MigrationError",
    "apply_migrations",
    "create_pool",
    "load_migrations",
]
