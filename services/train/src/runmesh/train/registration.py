"""Registering a trained model in the catalog, as train and tune both end."""

from __future__ import annotations

import asyncpg

from runmesh.catalog import trained_models
from runmesh.catalog.errors import DuplicateNameError
from runmesh.catalog.trained_models import ModelRow, NewModel
from runmesh.train.errors import TrainConfigError

_ACQUIRE_TIMEOUT_S = 30


async def register(pool: asyncpg.Pool, tenant: str, model: NewModel) -> ModelRow:
    """Store the run's model; a name another run's model has is the user's error (`name:`)."""
    async with pool.acquire(timeout=_ACQUIRE_TIMEOUT_S) as conn:
        try:
            return await trained_models.register_model(conn, tenant, model)
        except DuplicateNameError as exc:
            raise TrainConfigError(f"name: {exc}") from exc
