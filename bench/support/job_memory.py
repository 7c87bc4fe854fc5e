"""Peak memory of a benchmark's `job` children (processes that exit before the run's terminal
event, so their high-water mark is sampled while they live)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def _processes() -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """pid → (parent pid, command line, status fields) of every readable process."""
    found: dict[str, tuple[str, bytes, dict[str, str]]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        found[proc.name] = (fields.get("PPid", "").strip(), cmdline, fields)
    return found


def job_processes_hwm_mb() -> float:
    """Highest VmHWM among this process's `job` processes, in MB: the children of its job
    fork server (jobs are forked from it, see runmesh.execution.job)."""
    me = str(os.getpid())
    processes = _processes()
    servers = {
        pid
        for pid, (parent, cmdline, _) in processes.items()
        if parent == me and b"forkserver" in cmdline
    }
    peak = 0.0
    for parent, _, fields in processes.values():
        if parent in servers:
            peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
    return peak


async def sample_job_rss(peaks: list[float]) -> None:
    """Keep the job child's high-water mark (it is gone by the time the run ends)."""
    while True:
        peaks.append(await asyncio.to_thread(job_processes_hwm_mb))
        await asyncio.sleep(0.2)
