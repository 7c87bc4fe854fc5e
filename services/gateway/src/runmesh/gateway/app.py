"""The gateway's ASGI app: REST and SSE routes over the run state its loops maintain."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from runmesh.catalog import SCHEMA as CATALOG_SCHEMA
from runmesh.core.db import apply_migrations, create_pool, load_migrations
from runmesh.core.settings import Settings
from runmesh.core.telemetry import setup_tracing
from runmesh.core.topics import Topics
from runmesh.gateway import runs_store
from runmesh.gateway.admission import Policy
from runmesh.gateway.aggregator import Aggregator
from runmesh.gateway.cancellation import CancelWatchdog
from runmesh.gateway.deps import Deps
from runmesh.gateway.dispatcher import Dispatcher
from runmesh.gateway.hub import EventHub
from runmesh.gateway.outbox import OutboxRelay
from runmesh.gateway.pipelines.requests import PipelineRequests
from runmesh.gateway.pipelines.workspaces import WorkspaceSweeper
from runmesh.gateway.plugin_catalog import PluginCatalog
from runmesh.gateway.problems import install_problem_handlers
from runmesh.gateway.request_guard import RequestGuard, document_guarded_statuses
from runmesh.gateway.routes import (
    annotation,
    artifacts,
    catalog,
    dashboard,
    events,
    health,
    limits,
    models,
    pipelines,
    plugins,
    runs,
    schedules,
    storages,
    workers,
)
from runmesh.gateway.schedules.loop import ScheduleLoop
from runmesh.gateway.supervisor import supervise
from runmesh.gateway.tokens import TokenCache
from runmesh.gateway.worker_presence import WorkerPresenceLoop

SCHEMA = "runs"


def create_app(settings: Settings) -> FastAPI:
    """The gateway app; its lifespan opens the pool and starts the background loops."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            provider = setup_tracing(settings.telemetry, "gateway")
            if provider is not None:
                stack.callback(provider.shutdown)
            pool = await create_pool(settings.database, min_size=2, max_size=20)
            stack.push_async_callback(pool.close)
            await apply_migrations(pool, SCHEMA, load_migrations("runmesh.gateway"))
            await apply_migrations(pool, CATALOG_SCHEMA, load_migrations("runmesh.catalog"))
            hub = EventHub(settings, pool)
            relay = OutboxRelay(settings.kafka, pool)
            tokens = TokenCache(pool, ttl_s=settings.token_cache_ttl_s)
            topics = Topics(settings.topic_prefix)
            await runs_store.adopt_unscoped(pool, topics.prefix)
            dispatcher = Dispatcher(
                topics,
                pool,
                policy=Policy(
                    per_slot=settings.gateway.admission_per_slot,
                    ahead_s=settings.gateway.admission_ahead_s,
                ),
                on_release=relay.wake,
            )
            deps = Deps(
                settings=settings,
                pool=pool,
                hub=hub,
                relay=relay,
                tokens=tokens,
                dispatcher=dispatcher,
            )
            app.state.deps = deps

            loops = {
                "event hub": hub.run,
                "aggregator": Aggregator(
                    settings.kafka,
                    pool,
                    default_tenant=settings.tenant,
                    on_requests=dispatcher.wake,
                    on_ended=dispatcher.wake,
                ).run,
                "plugin catalog": PluginCatalog(settings.kafka, pool).run,
                "worker presence": WorkerPresenceLoop(
                    settings.kafka, pool, on_change=dispatcher.wake
                ).run,
                "dispatcher": dispatcher.run,
                "schedules": ScheduleLoop(deps).run,
                "outbox relay": relay.run,
                "cancel watchdog": CancelWatchdog(settings, pool).run,
                "pipeline requests": PipelineRequests(deps).run,
                "workspace sweeper": WorkspaceSweeper(settings.pipeline, settings.s3, pool).run,
            }
            tasks = [asyncio.create_task(supervise(name, run)) for name, run in loops.items()]
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    app = FastAPI(
        title="runmesh gateway",
        version="1",
        description="Submit plugin runs and follow them: REST and Server-Sent Events.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_problem_handlers(app)
    app.add_middleware(
        RequestGuard,
        max_body_bytes=settings.gateway_max_body_bytes,
        larger_bodies={
            ("POST", "/v1/plugins"): (
                settings.plugin_archive_max_bytes + plugins.MULTIPART_OVERHEAD,
                "RUNMESH_PLUGIN_ARCHIVE_MAX_BYTES",
            )
        },
    )
    for module in (
        health,
        runs,
        artifacts,
        events,
        pipelines,
        plugins,
        storages,
        catalog,
        annotation,
        models,
        workers,
        limits,
        schedules,
        dashboard,
    ):
        app.include_router(module.router)
    document_guarded_statuses(app)
    if settings.telemetry.otel_exporter_otlp_endpoint:
        _trace_requests(app)
    return app


def _trace_requests(app: FastAPI) -> None:
    """A server span per request, parent of what serving it does (SQL, the run's trace).

    Probes and the dashboard's files are left out; so are the per-message ASGI spans, which
    would add a span per event to every SSE stream. Spans go to the global provider, which
    the lifespan installs (`setup_tracing`).
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="/healthz,/readyz,/metrics,/dashboard/",
        exclude_spans=["receive", "send"],
    )
