"""A tenant's published code holds no Kafka credential, so it cannot start child runs yet: it
is told so plainly instead of failing on a missing bootstrap setting."""

from __future__ import annotations

import uuid

import pytest

from runmesh.core.events import RunRequest
from runmesh.core.settings import Settings
from runmesh.pipeline.child_runs import ChildRunError, run_child


async def test_tenant_code_is_told_it_cannot_start_child_runs() -> None:
    settings = Settings(_env_file=None).for_tenant_code("postgresql://rm_run_x:pw@db/runmesh")
    request = RunRequest(run_id=uuid.uuid4(), category="neural_net", action="inference")
    with pytest.raises(ChildRunError, match="published plugin's run cannot start child runs"):
        await run_child(settings, request, timeout_s=5, is_cancelled=lambda: False)
