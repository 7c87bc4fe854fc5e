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
    def pipelines(self) -> str:
        """Pipeline requests from any producer, keyed by run_id; the gateway starts them."""
        return f"{self.prefix}.pipelines"

    @property
    def control(self) -> str:
        """Cancellation requests, read by every worker."""
        return f"{self.prefix}.control"

    @property
    def plugins(self) -> str:
        """Plugin manifests announced by workers and the gateway."""
        return f"{self.prefix}.plugins"

    def creation_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs runmesh sets when it creates a topic (others get the broker's).

        `plugins` is kept forever: workers read it from its start to learn every version a
        tenant published, so the broker's default retention would forget them. (Not
        compacted: a record's key, `code@version`, does not name its tenant.)
        """
        return {self.plugins: {"retention.ms": "-1"}}
