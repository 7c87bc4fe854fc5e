"""A run named in a path by its id or by a unique prefix of it, as the CLI and the dashboard
show ids (8 characters), like git's short commit ids."""

from __future__ import annotations

import re
import uuid
from typing import Annotated

from fastapi import Depends, Path

from runmesh.gateway import runs_store
from runmesh.gateway.auth import Tenant
from runmesh.gateway.deps import Deps, get_deps
from runmesh.gateway.errors import InvalidRequest, NotFound

MIN_PREFIX = 4
_HEX = re.compile(r"[0-9a-f]+")

RunIdText = Annotated[
    str,
    Path(
        description=f"The run's id, or a unique prefix of it ({MIN_PREFIX} hex digits or more, "
        "e.g. the 8 the CLI shows)",
        min_length=MIN_PREFIX,
        max_length=36,
        examples=["7acbd4de"],
    ),
]


async def resolve_run_id(
    run_id: RunIdText, tenant: Tenant, deps: Annotated[Deps, Depends(get_deps)]
) -> uuid.UUID:
    """The id `run_id` names: itself when whole, else the one run of the tenant whose id
    starts with it (404 when none does, 422 when several do)."""
    with_dashes = run_id.strip().lower()
    try:
        return uuid.UUID(with_dashes)
    except ValueError:
        pass
    digits = with_dashes.replace("-", "")
    if not _HEX.fullmatch(digits) or len(digits) < MIN_PREFIX or len(digits) >= 32:
        raise InvalidRequest(
            f"{run_id!r} is not a run id: give the id, or {MIN_PREFIX} or more of its first "
            "hex digits"
        )
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    found = await runs_store.run_ids_between(deps.pool, tenant, low, high, limit=2)
    if not found:
        raise NotFound(f"no run id starts with {digits}")
    if len(found) > 1:
        raise InvalidRequest(
            f"the run id prefix {digits} is ambiguous (more than one run starts with it): "
            "give more characters"
        )
    return found[0]


RunId = Annotated[uuid.UUID, Depends(resolve_run_id)]
"""A path's `{run_id}`: a whole id, or a unique prefix resolved among the tenant's runs."""
