"""A job's memory limit: a cgroup of its own where the worker can make one, else an opt-in
RLIMIT (docs/operations.md "Job memory").

No blanket address-space limit: CUDA, torch and onnxruntime reserve far more address space
than they use, so `RLIMIT_AS` kept GPU plugins off the mesh. A cgroup (v2 `memory.max`, or v1
`memory.limit_in_bytes` on hosts still on the legacy hierarchy) limits the memory the job
really uses, and the kernel's OOM kill inside it is read back as `out of memory (limit N MB)`.
Where no cgroup can be made, `RUNMESH_JOB_MEMORY_LIMIT=rlimit` sets `RLIMIT_DATA` instead: it
counts private writable memory (heap, anonymous maps), not reservations, and an allocation
past it raises `MemoryError`.

The worker side (`JobCgroups`) makes one folder per worker beside its own cgroup and one
group per job inside it; the job joins its group itself, first thing (before the plugin
is imported), by writing `0` to its `cgroup.procs`. Writes here are to sysfs: fast, and made
from the worker's threads, never its event loop.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import resource
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from runmesh.core.errors import ConfigurationError
from runmesh.core.processes import pid_alive

log = logging.getLogger(__name__)

MemoryLimitMode = Literal["auto", "cgroup", "rlimit", "off"]

_MB = 1024 * 1024
_JOBS_FOLDER = "runmesh-jobs-"


class MemoryLimitError(ConfigurationError):
    """The worker cannot enforce job memory limits the way its settings ask."""


@dataclass(slots=True, frozen=True)
class MemoryLimit:
    """How one job is limited (it crosses the spawn boundary in the job's spec)."""

    mb: int
    how: Literal["cgroup", "rlimit"]
    cgroup: str | None = None
    """The job's own cgroup folder (`how == "cgroup"`)."""
    version: Literal[1, 2] = 2

    def apply(self) -> None:
        """In the job, before anything else: join the cgroup, or set the RLIMIT."""
        if self.how == "rlimit":
            limit = self.mb * _MB
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
            return
        assert self.cgroup is not None
        Path(self.cgroup, "cgroup.procs").write_text("0")  # 0: the writing process

    def exceeded(self) -> bool:
        """After the job: whether the kernel killed a process of it for memory."""
        if self.how != "cgroup" or self.cgroup is None:
            return False
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = Path(self.cgroup, name).read_text()
        except OSError:
            return False
        counts = dict(line.split(maxsplit=1) for line in text.splitlines() if " " in line)
        return int(counts.get("oom_kill", "0")) > 0

    def message(self) -> str:
        """What a run killed or failed for memory says."""
        return (
            f"out of memory (limit {self.mb} MB): the job used more memory than its limit; "
            "ask for more with `resources.memory_mb` (the action's config.yaml or the "
            "submission), up to what the worker offers (RUNMESH_WORKER_MEMORY_MB)"
        )


@dataclass(slots=True, frozen=True)
class _Hierarchy:
    version: Literal[1, 2]
    own: Path
    """The worker's own memory cgroup folder."""


class JobCgroups:
    """Makes and removes the jobs' cgroups of one worker process."""

    def __init__(self, hierarchy: _Hierarchy, folder: Path) -> None:
        self._version = hierarchy.version
        self.folder = folder

    @classmethod
    def open(
        cls,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        membership: Path = Path("/proc/self/cgroup"),
    ) -> JobCgroups:
        """The folder for this worker's jobs, made now; `MemoryLimitError` says why not."""
        hierarchy = _own_hierarchy(mountinfo, membership)
        parent = _v2_parent(hierarchy.own) if hierarchy.version == 2 else hierarchy.own
        _sweep_stale(parent)
        # One folder per worker, not per process: a process may run several workers, and
        # each removes its own folder when it stops.
        folder = parent / f"{_JOBS_FOLDER}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir(exist_ok=True)
            if hierarchy.version == 2:
                (folder / "cgroup.subtree_control").write_text("+memory")
        except OSError as exc:
            raise MemoryLimitError(f"cannot make a cgroup in {parent}: {exc.strerror}") from exc
        return cls(hierarchy, folder)

    def limit(self, name: str, mb: int) -> MemoryLimit:
        """A new group `name` limited to `mb` MiB, without swap; `MemoryLimitError` if the
        group cannot be made (the folder gone, the hierarchy full)."""
        path = self.folder / name
        size = str(mb * _MB)
        try:
            path.mkdir(exist_ok=True)
            (path / ("memory.max" if self._version == 2 else "memory.limit_in_bytes")).write_text(
                size
            )
        except OSError as exc:
            _remove_group(path)
            raise MemoryLimitError(f"cannot make the cgroup {path}: {exc.strerror}") from exc
        # No swap beyond the limit, where the host accounts for swap at all.
        with contextlib.suppress(OSError):
            if self._version == 2:
                (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.memsw.limit_in_bytes").write_text(size)
        return MemoryLimit(mb=mb, how="cgroup", cgroup=str(path), version=self._version)

    def remove(self, limit: MemoryLimit) -> None:
        """Remove a job's group, killing what the job left running in it."""
        if limit.cgroup is not None:
            _remove_group(Path(limit.cgroup))

    def close(self) -> None:
        """Remove the worker's folder (its jobs' groups are gone by then)."""
        with contextlib.suppress(OSError):
            self.folder.rmdir()


def open_job_cgroups(mode: MemoryLimitMode) -> JobCgroups | None:
    """The jobs' cgroups a worker with `RUNMESH_JOB_MEMORY_LIMIT=mode` uses, if any."""
    if mode not in ("auto", "cgroup"):
        return None
    try:
        return JobCgroups.open()
    except MemoryLimitError as exc:
        if mode == "cgroup":
            raise
        log.warning(
            "job memory limits are not enforced: %s (RUNMESH_JOB_MEMORY_LIMIT=rlimit enforces "
            "an RLIMIT_DATA instead)",
            exc,
        )
        return None


def _own_hierarchy(mountinfo: Path, own: Path) -> _Hierarchy:
    """The worker's memory cgroup: on the unified hierarchy if memory is there, else v1's."""
    try:
        mounts = mountinfo.read_text().splitlines()
        memberships = own.read_text().splitlines()
    except OSError as exc:
        raise MemoryLimitError(f"no cgroups on this host ({exc.strerror})") from exc
    for line in memberships:
        number, controllers, path = line.split(":", 2)
        if number == "0" and controllers == "":
            folder = _mounted(mounts, "cgroup2", None, path)
            if folder is not None and "memory" in _words(folder / "cgroup.controllers"):
                return _Hierarchy(2, folder)
    for line in memberships:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            folder = _mounted(mounts, "cgroup", "memory", path)
            if folder is not None:
                return _Hierarchy(1, folder)
    raise MemoryLimitError("the memory controller is not available to this process")


def _mounted(mounts: list[str], fstype: str, option: str | None, path: str) -> Path | None:
    """Where cgroup `path` of a hierarchy is mounted (mountinfo: root, mount point, options)."""
    for line in mounts:
        fields, _, tail = line.partition(" - ")
        parts, extra = fields.split(), tail.split()
        if len(parts) < 5 or len(extra) < 3 or extra[0] != fstype:
            continue
        if option is not None and option not in extra[2].split(","):
            continue
        root, point = parts[3], parts[4]
        if root != "/" and not (path == root or path.startswith(root + "/")):
            continue
        relative = path[len(root) :] if root != "/" else path
        folder = Path(point) / relative.lstrip("/")
        if folder.is_dir():
            return folder
    return None


def _v2_parent(own: Path) -> Path:
    """The folder under which a v2 worker's jobs get groups: its own cgroup, with memory
    given to its children. A cgroup with processes cannot give its children controllers, so
    a worker alone in its cgroup first moves into a leaf of its own."""
    control = own / "cgroup.subtree_control"
    if "memory" in _words(control):
        return own
    try:
        control.write_text("+memory")
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            raise MemoryLimitError(f"cannot delegate memory in {own}: {exc.strerror}") from exc
    else:
        return own
    if _words(own / "cgroup.procs") != {str(os.getpid())}:
        raise MemoryLimitError(
            f"the worker's cgroup {own} holds other processes; give the worker a cgroup of its "
            "own (a container, or systemd's Delegate=yes)"
        )
    leaf = own / f"runmesh-worker-{os.getpid()}"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text("0")
        control.write_text("+memory")
    except OSError as exc:
        raise MemoryLimitError(f"cannot delegate memory in {own}: {exc.strerror}") from exc
    return own


def _sweep_stale(parent: Path) -> None:
    """Remove the folders of workers that died without removing theirs (SIGKILL)."""
    for folder in parent.glob(f"{_JOBS_FOLDER}*"):
        pid = folder.name.removeprefix(_JOBS_FOLDER).partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            for group in [child for child in folder.iterdir() if child.is_dir()]:
                _remove_group(group)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _remove_group(group: Path) -> None:
    for pid in _words(group / "cgroup.procs"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    for _ in range(200):  # a killed process leaves its group as it exits: soon
        try:
            group.rmdir()
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                break
            time.sleep(0.01)
        else:
            return
    log.warning("could not remove the job cgroup %s", group)


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()
