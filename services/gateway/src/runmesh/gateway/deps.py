"""Everything a request handler may use, opened once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from fastapi import Request

from runmesh.core.settings import Settings
from runmesh.core.topics import Topics
from runmesh.gateway.dispatcher import Dispatcher
from runmesh.gateway.hub import EventHub
from runmesh.gateway.outbox import OutboxRelay
from runmesh.gateway.tokens import TokenCache


@dataclass(slots=True)
class Deps:
    """The gateway's long-lived resources (DESIGN: pass dependencies in)."""

    settings: Settings
    pool: asyncpg.Pool
    hub: EventHub
    relay: OutboxRelay
    tokens: TokenCache
    dispatcher: Dispatcher
    """Wake it after storing a run: it admits the run onto a pool."""

    @property
    def topics(self) -> Topics:
        """Topic names under the configured prefix."""
        return Topics(self.settings.topic_prefix)


def get_deps(request: Request) -> Deps:
    """FastAPI dependency returning the app's `Deps`."""
    deps: Deps = request.app.state.deps
    return deps
