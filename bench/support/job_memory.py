"""Peak memory of a benchmark's `job` children (spawned processes that exit before the run's
terminal event, so their high-water mark is sampled while they live)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path


def job_processes_hwm_mb() -> float:
    """Highest VmHWM among this process's `job` children (multiprocessing spawn), in MB."""
    me = str(os.getpid())
    peak = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() != me or b"spawn_main" not in cmdline:
            continue
        peak = max(peak, int(fields.get("VmHWM", "0 kB").split()[0]) / 1024)
    return peak


async def sample_job_rss(peaks: list[float]) -> None:
    """Keep the job child's high-water mark (it is gone by the time the run ends)."""
    while True:
        peaks.append(await asyncio.to_thread(job_processes_hwm_mb))
        await asyncio.sleep(0.2)
