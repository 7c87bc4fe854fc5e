"""Running one action: in-process (`task`) or in an isolated child process (`job`)."""

from runmesh.execution.job import JobSpec, execute_job, warm_job_server
from runmesh.execution.outcome import Cancelled, Failed, Outcome, Succeeded
from runmesh.execution.stop import StopSignal
from runmesh.execution.task import execute_task

__all__ = [
    "Cancelled",
    "Failed",
    "JobSpec",
    "Outcome",
    "StopSignal",
    "Succeeded",
    "execute_job",
    "execute_task",
    "warm_job_server",
]
