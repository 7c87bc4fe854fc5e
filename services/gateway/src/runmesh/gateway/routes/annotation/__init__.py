"""`/v1/projects`, `/v1/tasks`, `/v1/ground-truth-*`: a tenant's annotation catalog.

One module per resource (`projects`, `tasks`, `ground_truth`); their API models are validated
from the catalog's rows (`from_attributes`), field for field.
"""

from __future__ import annotations

from fastapi import APIRouter

from runmesh.gateway.routes.annotation import ground_truth, projects, tasks

router = APIRouter()
for _resource in (projects, tasks, ground_truth):
    router.include_router(_resource.router)
