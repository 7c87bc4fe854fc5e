"""`$RUNMESH_HOME` (default `.runmesh/`): where `runmesh dev` keeps its sandbox runs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: the core settings (pydantic) are not needed by `runmesh --help`.
    from runmesh.core.settings import Settings

KEEP_RUNS = 3  # sandbox runs kept for their logs; older ones are deleted at the next start


def prepare_home(settings: Settings) -> Settings:
    """Settings whose sandbox lives under the home directory, old runs pruned."""
    if settings.sandbox_dir is not None:
        return settings
    sandbox_dir = (settings.home / "sandbox").resolve()
    prune_runs(sandbox_dir, keep=KEEP_RUNS - 1)  # the run about to start makes KEEP_RUNS
    return settings.model_copy(update={"sandbox_dir": sandbox_dir})


def prune_runs(directory: Path, *, keep: int) -> list[Path]:
    """Delete all but the `keep` newest `run-*` directories; return what was deleted."""
    if not directory.is_dir():
        return []
    runs = sorted(directory.glob("run-*"), key=lambda path: path.stat().st_mtime, reverse=True)
    stale = runs[keep:]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale
