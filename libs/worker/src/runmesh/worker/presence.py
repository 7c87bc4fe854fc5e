"""A worker's presence on `runmesh.workers`: what lets the gateway say why a run is queued."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from aiokafka.errors import KafkaError

from runmesh.core.events import PresenceState, WorkerPresence, utcnow
from runmesh.core.kafka import Publisher
from runmesh.core.settings_parts import WorkerSettings
from runmesh.worker.resource_gate import worker_capacity

log = logging.getLogger(__name__)

EVENT_TYPE: Final = "worker.presence"
"""`event-type` header of a presence record."""
_SEND_TIMEOUT_S: Final = 10.0
_LAST_SEND_TIMEOUT_S: Final = 2.0


class PresenceBeacon:
    """Announces one worker of one category: `serving` at once and every heartbeat while it
    serves, `stopping` when it drains, `stopped` when it leaves.

    A failed announcement is logged and tried again at the next heartbeat: presence only
    informs (queue reasons, the plugins page); runs never wait on it.
    """

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        *,
        worker: str,
        service: str,
        category: str,
        settings: WorkerSettings,
        busy: Callable[[], int],
    ) -> None:
        self._publisher = publisher
        self._topic = topic
        self._settings = settings
        self._busy = busy
        self._capacity = worker_capacity(settings)
        self._identity = {"worker": worker, "service": service, "category": category}
        self._started_at = utcnow()
        self._failing = False

    def presence(self, state: PresenceState) -> WorkerPresence:
        """The announcement of `state` as of now."""
        slots = self._settings.max_concurrent_runs
        return WorkerPresence(
            **self._identity,
            pool=self._settings.worker_pool,
            labels=self._settings.worker_labels,
            slots=slots,
            busy=min(self._busy(), slots),
            gpus=self._capacity.gpus,
            memory_mb=self._capacity.memory_mb,
            state=state,
            heartbeat_s=self._settings.worker_heartbeat_s,
            started_at=self._started_at,
        )

    async def run(self) -> None:
        """Announce `serving` now and every heartbeat until cancelled."""
        while True:
            await self.announce("serving")
            await asyncio.sleep(self._settings.worker_heartbeat_s)

    async def announce(self, state: PresenceState) -> None:
        """Send one announcement and wait for its acknowledgement (bounded); never raises.
        The last ones (`stopping`, `stopped`) wait less: a worker leaving while Kafka is away
        must not add much to its shutdown (the gateway counts it gone after 3 heartbeats)."""
        timeout_s = _SEND_TIMEOUT_S if state == "serving" else _LAST_SEND_TIMEOUT_S
        try:
            async with asyncio.timeout(timeout_s):
                ack = await self._publisher.send(
                    self._topic,
                    self.presence(state),
                    key=self._identity["worker"],
                    event_type=EVENT_TYPE,
                    headers=[],
                )
                await ack
        except (KafkaError, TimeoutError) as exc:
            if not self._failing:
                log.warning("worker presence not announced (%s); trying again", exc)
            self._failing = True
            return
        if self._failing:
            log.info("worker presence announced again")
        self._failing = False
