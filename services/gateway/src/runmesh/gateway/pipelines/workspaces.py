"""Cleaning pipeline workspaces: once every pipeline run that uses a workspace ended more than
`RUNMESH_PIPELINE_WORKSPACE_RETENTION_S` ago, its files are deleted from the platform bucket.

Every replica runs one sweeper. Two replicas may delete the same files at once, which is
harmless (deleting a deleted object is a no-op), and a workspace is marked cleaned only after
its last file is gone, so a sweeper stopped mid-way leaves it for the next sweep.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from runmesh.core.settings_parts import PipelineSettings, S3Settings
from runmesh.gateway.runs_store import DB_TIMEOUT_S
from runmesh.storage import platform_storage

log = logging.getLogger(__name__)

_SWEEP_LIMIT = 50  # workspaces per sweep: a backlog is worked off over several sweeps


class WorkspaceSweeper:
    """Deletes the files of pipeline workspaces whose retention is over."""

    def __init__(self, pipeline: PipelineSettings, s3: S3Settings, pool: asyncpg.Pool) -> None:
        self._retention_s = pipeline.workspace_retention_s
        self._interval_s = pipeline.workspace_sweep_interval_s
        self._s3 = s3
        self._pool = pool

    async def run(self) -> None:
        """Sweep until cancelled (errors propagate to the supervisor, which restarts it)."""
        while True:
            cleaned = await self.sweep()
            if cleaned:
                log.info("cleaned %d pipeline workspaces: %s", len(cleaned), ", ".join(cleaned))
            await asyncio.sleep(self._interval_s)

    async def sweep(self) -> list[str]:
        """Clean every workspace due now (at most `_SWEEP_LIMIT`); their URIs."""
        rows = await self._pool.fetch(
            "SELECT p.workspace FROM runs.pipelines p JOIN runs.runs r ON r.id = p.run_id"
            " WHERE p.workspace IS NOT NULL AND p.workspace_cleaned_at IS NULL"
            " GROUP BY p.workspace"
            " HAVING bool_and(r.state IN ('succeeded', 'failed', 'cancelled'))"
            " AND max(r.finished_at) <= now() - make_interval(secs => $1)"
            " LIMIT $2",
            self._retention_s,
            _SWEEP_LIMIT,
            timeout=DB_TIMEOUT_S,
        )
        cleaned = []
        for row in rows:
            uri: str = row["workspace"]
            await self._delete_files(uri)
            await self._pool.execute(
                "UPDATE runs.pipelines SET workspace_cleaned_at = now() WHERE workspace = $1",
                uri,
                timeout=DB_TIMEOUT_S,
            )
            cleaned.append(uri)
        return cleaned

    async def _delete_files(self, uri: str) -> None:
        """Delete every object under the workspace's key prefix."""
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if bucket != self._s3.bucket:
            # Stored under another platform bucket (settings changed): not this gateway's to clean.
            log.warning("workspace %s is not in the platform bucket %s", uri, self._s3.bucket)
            return
        async with platform_storage(self._s3, prefix=prefix) as storage:
            paths = [info.path async for info in storage.list(recursive=True)]
            for path in paths:
                await storage.delete(path)
