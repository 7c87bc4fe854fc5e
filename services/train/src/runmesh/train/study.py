"""Optuna studies in PostgreSQL (schema `optuna`), shared by every train replica.

A tune run creates its study, named after the run; each of its trials runs as a run of its
own (`tune_trial`), on whichever replica Kafka hands it to, and asks that study for its
hyperparameters. Optuna's storage is synchronous (SQLAlchemy): use it from a thread.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import optuna
from sqlalchemy.engine import make_url

from runmesh.core.settings import Settings
from runmesh.train.errors import TrainConfigError
from runmesh.train.params import SearchChoice, SearchRange, TunedName

SCHEMA = "optuna"
_INTEGER = {"epochs", "batch_size", "hidden_units", "negatives_per_image"}


def study_name(tune_run: uuid.UUID) -> str:
    """One study per tune run: a retried tune attempt continues the same study."""
    return f"runmesh-tune-{tune_run}"


async def ensure_schema(pool: asyncpg.Pool) -> None:
    """Create the schema Optuna keeps its tables in (it creates the tables itself)."""
    async with pool.acquire(timeout=30) as conn:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}", timeout=30)


@contextlib.contextmanager
def opened_storage(settings: Settings) -> Iterator[optuna.storages.RDBStorage]:
    """`storage(settings)`, its connections closed on leaving."""
    rdb = storage(settings)
    try:
        yield rdb
    finally:
        rdb.engine.dispose()


def storage(settings: Settings) -> optuna.storages.RDBStorage:
    """Optuna's storage on the platform database, its tables in schema `optuna` (dispose of
    its engine when done: `opened_storage`)."""
    if settings.database_url is None:
        raise TrainConfigError("tune needs PostgreSQL: RUNMESH_DATABASE_URL is not set")
    url = make_url(settings.database_url).set(drivername="postgresql+psycopg")
    return optuna.storages.RDBStorage(
        url.render_as_string(hide_password=False),
        engine_kwargs={
            "pool_pre_ping": True,
            "pool_size": 2,
            "connect_args": {"options": f"-c search_path={SCHEMA}", "connect_timeout": 30},
        },
    )


def suggest(
    trial: optuna.Trial, space: dict[TunedName, SearchRange | SearchChoice]
) -> dict[str, Any]:
    """The trial's values for every searched hyperparameter."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        if isinstance(spec, SearchChoice):
            choices = [int(c) if name in _INTEGER else c for c in spec.choices]
            values[name] = trial.suggest_categorical(name, choices)
        elif name in _INTEGER:
            values[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log)
        else:
            values[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return values
