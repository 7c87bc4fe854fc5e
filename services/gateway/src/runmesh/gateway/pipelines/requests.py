"""Pipelines submitted by any Kafka producer: `PipelineRequest`s on `runmesh.pipelines`.

Every gateway replica shares one consumer group. Each request is started as `POST
/v1/pipelines` would start it, under the request's `run_id`, so a redelivered request finds
its run and starts nothing twice. A request the gateway refuses (a definition that fails its
checks, an action the tenant cannot run) has no HTTP client to answer: it becomes a failed
pipeline run whose error says why, so the producer sees it at `GET /v1/runs/{run_id}`.
"""

from __future__ import annotations

import logging

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from runmesh.core.errors import DecodeError
from runmesh.core.events import PipelineRequest, decode
from runmesh.core.pipelines import PipelineSpec
from runmesh.core.validation import describe_errors
from runmesh.gateway import runs_store
from runmesh.gateway.consume import Records, consume_batches
from runmesh.gateway.deps import Deps
from runmesh.gateway.errors import GatewayError
from runmesh.gateway.pipelines.start import SubmitPipeline, start_pipeline

log = logging.getLogger(__name__)

REFUSED_ERROR_TYPE = "PipelineRefused"
_MAX_RECORDS = 100  # requests per batch: each starts a pipeline in its own transaction


class PipelineRequests:
    """Starts the pipelines producers send to the pipelines topic."""

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._kafka = deps.settings.kafka
        self._topic = deps.topics.pipelines
        self.started = 0
        """Requests this instance started or refused (redelivered ones included)."""

    @property
    def group_id(self) -> str:
        """The consumer group shared by every gateway replica."""
        return f"{self._kafka.topic_prefix}-gateway-pipelines"

    async def run(self) -> None:
        """Consume until cancelled; raises on a lasting Kafka or PostgreSQL failure. A lost
        commit redoes a batch; each request's run id makes that harmless."""
        await consume_batches(
            self._kafka,
            self._topic,
            group_id=self.group_id,
            client_id="gateway-pipelines",
            max_records=_MAX_RECORDS,
            handle=self._handle_all,
        )

    async def _handle_all(self, records: Records) -> None:
        for record in records:
            await self.handle(record)

    async def handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        """Start one request's pipeline, or record why it was refused."""
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        try:
            request = decode(record.value or b"", PipelineRequest)
        except DecodeError as exc:
            # No run id to report on: the record is logged, with where to find it.
            log.warning("skipped pipeline request %s: %s", where, exc)
            return
        try:
            spec = PipelineSpec.model_validate(request.pipeline)
            body = SubmitPipeline(pipeline=spec, params=request.params, run_id=request.run_id)
            await start_pipeline(self._deps, request.tenant, body, None, submitted_via="kafka")
        except ValidationError as exc:
            await self._refuse(
                request, f"the pipeline is not valid: {describe_errors(exc.errors())}"
            )
        except GatewayError as exc:
            await self._refuse(request, str(exc))
        self.started += 1

    async def _refuse(self, request: PipelineRequest, why: str) -> None:
        """A failed pipeline run under the request's id, saying why; nothing when the id is
        taken (a redelivered request, or a run id used before)."""
        name = request.pipeline.get("name")
        async with (
            self._deps.pool.acquire(timeout=runs_store.DB_TIMEOUT_S) as conn,
            conn.transaction(),
        ):
            row = await runs_store.insert_pipeline_run(
                conn,
                run_id=request.run_id,
                tenant=request.tenant,
                name=name if isinstance(name, str) and name else "pipeline",
                params=request.params,
                parent_run_id=None,
                idempotency_key=None,
                deployment=self._deps.topics.prefix,
                submitted_via="kafka",
            )
            if row is None:
                log.warning(
                    "pipeline request %s refused (%s); its run id is taken", request.run_id, why
                )
                return
            error = {"type": REFUSED_ERROR_TYPE, "message": why}
            await runs_store.end_pipeline_run(
                conn, request.run_id, state="failed", progress={}, result=None, error=error
            )
            await runs_store.notify_ended(conn, {request.run_id: request.tenant})
        log.info("pipeline request %s refused: %s", request.run_id, why)
