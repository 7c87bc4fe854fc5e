"""Topic names of the wire contract (DESIGN §3), derived from the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Topics:
    """The topics one deployment uses; `prefix` is `RUNMESH_TOPIC_PREFIX`."""

    prefix: str = "runmesh"

    def requests(self, category: str) -> str:
        """Run requests of one category, keyed by run_id."""
        return f"{self.prefix}.requests.{category}"

    def dlq(self, category: str) -> str:
        """Undecodable or exhausted requests of one category, with a reason header."""
        return f"{self.requests(category)}.dlq"

    @property
    def events(self) -> str:
        """Every run event, keyed by run_id so one run's events keep their order."""
        return f"{self.prefix}.events"

    @property
    def control(self) -> str:
        """Cancellation requests, read by every worker."""
        return f"{self.prefix}.control"

    @property
    def plugins(self) -> str:
        """Plugin manifests announced by workers and the gateway."""
        return f"{self.prefix}.plugins"
