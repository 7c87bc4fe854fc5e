"""Extract: select the collection's data units and make sure each has a task (upserts)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from runmesh.catalog import annotation, repository
from runmesh.catalog.errors import CatalogError
from runmesh.catalog.repository import DataUnitRow, Executor
from runmesh.to_task.context import Item, ToTaskContext
from runmesh.to_task.errors import NoDataUnitsError, ToTaskConfigError
from runmesh.to_task.steps.base import Step

_PAGE = 1000


class Extract(Step):
    """Streams the selected units page by page and creates their missing tasks in batches.

    Creating tasks is an upsert per (project, data unit), so a retried attempt or a concurrent
    run finds the same tasks and makes no duplicates.
    """

    name = "extract"

    async def execute(self, ctx: ToTaskContext) -> None:
        """Fill `ctx.items` with every selected unit and its task."""
        assert ctx.collection is not None  # set by Validate
        params = ctx.params
        filters = params.task_filters
        async with ctx.pool.acquire(timeout=30) as conn:
            existing = await _existing_tasks(conn, ctx)
            batch: list[DataUnitRow] = []
            async for unit in _units(conn, ctx):
                known = existing.get(unit.id)
                if filters.only_without_tasks and known is not None and known[1]:
                    continue  # has an annotated task
                batch.append(unit)
                if len(batch) == params.batch_size:
                    await _make_tasks(conn, ctx, batch, existing)
                    batch = []
                    ctx.run.check_cancelled()
            if batch:
                await _make_tasks(conn, ctx, batch, existing)
        if not ctx.items:
            ctx.run.log_message_with_code("NO_DATA_UNITS", filters.model_dump(exclude_none=True))
            raise NoDataUnitsError(
                f"no data unit of data collection {ctx.collection.name!r} matches the task "
                f"filters {filters.model_dump(exclude_none=True)}"
            )
        ctx.counts.stand_by = len(ctx.items)
        ctx.run.log_message_with_code("TASKS_READY", len(ctx.items), ctx.tasks_created)


async def _existing_tasks(conn: Executor, ctx: ToTaskContext) -> dict[int, tuple[int, bool]]:
    """The project's tasks as data unit id → (task id, has annotations)."""
    found: dict[int, tuple[int, bool]] = {}
    after = 0
    while True:
        page = await annotation.list_tasks(
            conn, ctx.tenant, project_id=ctx.params.project, after_id=after, limit=_PAGE
        )
        for task in page:
            found[task.data_unit_id] = (task.id, task.data is not None)
        if len(page) < _PAGE:
            return found
        after = page[-1].id


async def _units(conn: Executor, ctx: ToTaskContext) -> AsyncIterator[DataUnitRow]:
    """The selected units in id order: the listed ones (each must be of the collection),
    else all of the collection, narrowed by the meta and created-range filters."""
    assert ctx.collection is not None
    filters = ctx.params.task_filters
    wanted = filters.data_unit_ids
    if wanted is not None:
        present = await repository.list_data_units(
            conn, ctx.tenant, ctx.collection.id, unit_ids=wanted, limit=len(wanted)
        )
        missing = sorted(set(wanted) - {unit.id for unit in present})
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise ToTaskConfigError(
                f"task_filters.data_unit_ids: not in data collection {ctx.collection.name!r}: "
                f"{shown}"
            )
    after = 0
    while True:
        page = await repository.list_data_units(
            conn,
            ctx.tenant,
            ctx.collection.id,
            after_id=after,
            limit=_PAGE,
            unit_ids=wanted,
            meta=filters.meta,
            created_after=filters.created_after,
            created_before=filters.created_before,
        )
        for unit in page:
            yield unit
        if len(page) < _PAGE:
            return
        after = page[-1].id


async def _make_tasks(
    conn: Executor,
    ctx: ToTaskContext,
    units: list[DataUnitRow],
    existing: dict[int, tuple[int, bool]],
) -> None:
    try:
        created = await annotation.create_tasks(
            conn, ctx.tenant, ctx.params.project, [unit.id for unit in units]
        )
    except CatalogError as exc:  # the project or a unit went away since validation
        raise ToTaskConfigError(str(exc)) from exc
    ctx.tasks_created += created.created
    for unit, task_id in zip(units, created.task_ids, strict=True):
        known = existing.get(unit.id)
        has_data = known is not None and known[0] == task_id and known[1]
        ctx.items.append(Item(unit.id, task_id, dict(unit.files), has_data))
