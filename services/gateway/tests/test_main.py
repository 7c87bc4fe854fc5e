"""`python -m runmesh.gateway` start-up failures: one line naming the problem, exit status 1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (None, "RUNMESH_DATABASE_URL is not set"),
        ("postgresql://me:hunter2@127.0.0.1:1/db", "cannot reach PostgreSQL at"),
    ],
)
def test_a_missing_or_unreachable_database_is_one_line(dsn: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNMESH_")}
    if dsn is not None:
        env["RUNMESH_DATABASE_URL"] = dsn
    done = subprocess.run(
        [sys.executable, "-m", "runmesh.gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr
