"""Topic names of the wire contract (DESIGN §3), derived from the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass

from runmesh.core.pools import DEFAULT_POOL


@dataclass(slots=True, frozen=True)
class Topics:
    """The topics one deployment uses; `prefix` is `RUNMESH_TOPIC_PREFIX`."""

    prefix: str = "runmesh"

    def requests(self, category: str, pool: str = DEFAULT_POOL) -> str:
        """Run requests of one category for one pool of its workers, keyed by run_id: the
        default pool's is `<prefix>.requests.<category>`, another's adds `.pool.<pool>`."""
        topic = f"{self.prefix}.requests.{category}"
        return topic if pool == DEFAULT_POOL else f"{topic}.pool.{pool}"

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

    @property
    def workers(self) -> str:
        """Worker presence (`WorkerPresence`), keyed by worker id; the gateway keeps the
        live ones."""
        return f"{self.prefix}.workers"

    def creation_configs(self) -> dict[str, dict[str, str]]:
        """Topic configs runmesh sets when it creates a topic (others get the broker's).

        `plugins` is kept forever: workers read it from its start to learn every version a
        tenant published, so the broker's default retention would forget them. (Not
        compacted: a record's key, `code@version`, does not name its tenant.) `workers`
        keeps an hour.
        """
        return {
            self.plugins: {"retention.ms": "-1"},
            # Only the latest announcements matter: a worker repeats itself every few seconds.
            self.workers: {"retention.ms": str(3600 * 1000)},
        }
