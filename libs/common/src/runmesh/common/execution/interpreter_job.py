"""Entry point of a job run by another interpreter: `python -m ... <pipe fd> <worker pid>`.

The worker writes the pickled `JobSpec` into the pipe, then reads the job's messages from it,
exactly as from a job forked from its own job server.
"""

from __future__ import annotations

import sys
from multiprocessing.connection import Connection

from runmesh.common.execution.job_child import JobSpec, job_main


def main(argv: list[str]) -> None:
    """Receive the spec and run the job."""
    fd, worker_pid = int(argv[1]), int(argv[2])
    conn = Connection(fd)
    spec = conn.recv()
    if not isinstance(spec, JobSpec):
        raise SystemExit(f"expected a JobSpec on fd {fd}, got {type(spec).__name__}")
    job_main(spec, conn, worker_pid)


if __name__ == "__main__":
    main(sys.argv)
