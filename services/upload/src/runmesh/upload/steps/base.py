"""A pipeline step: `execute` does its part, `rollback` undoes it when a later step fails."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from runmesh.upload.context import UploadContext


class Step(ABC):
    """One step of the upload pipeline (the Synapse `BaseStep`)."""

    name: ClassVar[str] = ""

    @abstractmethod
    async def execute(self, ctx: UploadContext) -> None:
        """Do this step's work, reading and filling `ctx`."""

    async def rollback(self, ctx: UploadContext) -> None:  # noqa: B027 -- most steps write nothing
        """Undo what `execute` wrote outside `ctx` (objects, rows); nothing by default."""
