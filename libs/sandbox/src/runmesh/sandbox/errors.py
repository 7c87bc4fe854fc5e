"""The error a sandbox part raises when it cannot start or stop."""

from __future__ import annotations

from pathlib import Path

from runmesh.core.errors import RunmeshError


class SandboxError(RunmeshError):
    """A sandbox part (Tansu, Postgres, moto) failed; names the part and where its log is.

    `summary` is one line for people (the CLI prints only it); `str()` adds the last lines of
    the part's log so that a failing test shows why without opening the file.
    """

    def __init__(
        self, part: str, problem: str, *, log_path: Path | None = None, log_tail: str = ""
    ) -> None:
        self.part = part
        self.problem = problem
        self.log_path = log_path
        self.log_tail = log_tail
        message = self.summary
        if log_tail:
            message += f"\n--- last lines of {log_path} ---\n{log_tail}"
        super().__init__(message)

    @property
    def summary(self) -> str:
        """One line: the part, what went wrong and where its log is."""
        where = f" (log: {self.log_path})" if self.log_path is not None else ""
        return f"sandbox {self.part}: {self.problem}{where}"
