"""Finding the worker's memory cgroup (unified or legacy hierarchy) from /proc's files, the
files a job's group is limited with, and reading an OOM kill back. The kernel's side is
`tests/test_job_memory.py`; these run on folders laid out like cgroupfs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runmesh.execution.memory_limit import JobCgroups, MemoryLimit, MemoryLimitError


def fake_host(tmp: Path, *, unified: bool) -> tuple[Path, Path]:
    """A mountinfo and a /proc/self/cgroup naming a cgroup folder under `tmp`."""
    own = tmp / ("unified" if unified else "memory") / "pod" / "worker"
    own.mkdir(parents=True)
    if unified:
        (own / "cgroup.controllers").write_text("cpu io memory pids\n")
        (own / "cgroup.subtree_control").write_text("memory\n")
        mounts = f"35 24 0:30 / {tmp / 'unified'} rw,nosuid - cgroup2 cgroup2 rw\n"
        membership = "0::/pod/worker\n"
    else:
        mounts = (
            f"32 31 0:29 / {tmp / 'cpu'} rw,relatime - cgroup cgroup rw,cpu\n"
            f"34 31 0:31 / {tmp / 'memory'} rw,relatime - cgroup cgroup rw,memory\n"
        )
        membership = "5:cpu:/\n4:memory:/pod/worker\n0::/\n"
    (tmp / "mountinfo").write_text(mounts)
    (tmp / "cgroup").write_text(membership)
    return tmp / "mountinfo", tmp / "cgroup"


@pytest.mark.parametrize("unified", [True, False])
def test_a_jobs_group_is_made_under_the_workers_own_with_its_limit(
    tmp_path: Path, unified: bool
) -> None:
    mountinfo, membership = fake_host(tmp_path, unified=unified)
    cgroups = JobCgroups.open(mountinfo, membership)
    own = tmp_path / ("unified" if unified else "memory") / "pod" / "worker"
    assert cgroups.folder.parent == own
    assert cgroups.folder.name.startswith(f"runmesh-jobs-{os.getpid()}-")
    assert JobCgroups.open(mountinfo, membership).folder != cgroups.folder  # one per worker
    limit = cgroups.limit("run-1", 1024)
    group = Path(limit.cgroup or "")
    assert group.parent == cgroups.folder and limit.mb == 1024 and limit.how == "cgroup"
    if unified:
        assert (cgroups.folder / "cgroup.subtree_control").read_text() == "+memory"
        assert (group / "memory.max").read_text() == str(1024 * 1024 * 1024)
        assert (group / "memory.swap.max").read_text() == "0"
        assert limit.version == 2
    else:
        assert (group / "memory.limit_in_bytes").read_text() == str(1024 * 1024 * 1024)
        assert limit.version == 1


def test_a_host_without_a_memory_controller_is_said_so(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(f"35 24 0:30 / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/\n")
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    with pytest.raises(MemoryLimitError, match="memory controller is not available"):
        JobCgroups.open(tmp_path / "mountinfo", tmp_path / "cgroup")


@pytest.mark.parametrize(
    ("version", "name", "text", "killed"),
    [
        (2, "memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n", True),
        (2, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", False),
        (1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", True),
        (1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", False),
    ],
)
def test_an_oom_kill_in_the_group_is_read_back(
    tmp_path: Path, version: int, name: str, text: str, killed: bool
) -> None:
    (tmp_path / name).write_text(text)
    limit = MemoryLimit(mb=512, how="cgroup", cgroup=str(tmp_path), version=version)  # type: ignore[arg-type]
    assert limit.exceeded() is killed
    assert limit.message().startswith("out of memory (limit 512 MB): ")


def test_an_rlimit_is_never_read_as_an_oom_kill() -> None:
    assert MemoryLimit(mb=512, how="rlimit").exceeded() is False


def test_the_folders_of_dead_workers_are_swept(tmp_path: Path) -> None:
    mountinfo, membership = fake_host(tmp_path, unified=False)
    own = tmp_path / "memory" / "pod" / "worker"
    dead = own / "runmesh-jobs-999999999-0a1b2c3d"  # no such process
    (dead / "run-1").mkdir(parents=True)
    alive = own / f"runmesh-jobs-{os.getpid()}-0a1b2c3d"
    alive.mkdir()
    JobCgroups.open(mountinfo, membership)
    assert not dead.exists()
    assert alive.exists()


def test_a_group_that_cannot_be_made_is_a_memory_limit_error(tmp_path: Path) -> None:
    mountinfo, membership = fake_host(tmp_path, unified=True)
    cgroups = JobCgroups.open(mountinfo, membership)
    shutil.rmtree(cgroups.folder)  # gone under the worker
    with pytest.raises(MemoryLimitError, match="cannot make the cgroup"):
        cgroups.limit("run-1", 512)
