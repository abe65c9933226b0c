"""Composition root: builds settings, store and services once, and the app that serves them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from batchin.config import Settings
from batchin.core.accounts.auth import AuthService
from batchin.core.accounts.service import AccountService
from batchin.core.accounts.sessions import SessionService
from batchin.core.accounts.signup import SignupService
from batchin.core.audit.retention import AuditLogSize
from batchin.core.audit.service import AuditService
from batchin.core.batches.retention import input_files_in_use
from batchin.core.batches.service import BatchService
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.limits import InMemoryRateLimiter, RateLimiter
from batchin.core.billing.metering import MeteringService
from batchin.core.billing.storage_quota import StorageQuota
from batchin.core.billing.topups import TopupService
from batchin.core.billing.usage import UsageService
from batchin.core.experiments.service import ExperimentService
from batchin.core.media.audio import AudioService
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.media.files import FileService
from batchin.core.media.images import ImageService
from batchin.core.media.linked import LinkedMedia
from batchin.core.media.links import LinkSigner, load_or_create_link_key
from batchin.core.media.retention import FilePurger, VideoPurger
from batchin.core.media.videos import VideoService
from batchin.core.prompts.retention import PromptSamplePurger
from batchin.core.prompts.service import PromptService
from batchin.core.regions import RegionPolicy
from batchin.core.retention import RetentionJob, RetentionRule
from batchin.core.serving.admission import AdmissionController
from batchin.core.serving.asserted_records import AssertedRecordService
from batchin.core.serving.catalog import CatalogService
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.inference import InferenceService
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.serving.served_calls import ServedCalls
from batchin.core.traces.retention import TracePurger
from batchin.core.traces.service import TraceService
from batchin.core.webhooks.retention import WebhookPurger
from batchin.core.webhooks.service import WebhookService
from batchin.models.catalog import load_catalog
from batchin.models.engine_relay import RelayAddress
from batchin.models.registry import ModelRegistry
from batchin.services import Services
from batchin.shared_limiter import limiter_of
from batchin.store.database import Database
from batchin.store.group_commit import GroupCommitWriter, sqlite_file
from batchin.store.migrate import upgrade
from batchin.store.write_relay import RelayedWriter, writer_address

log = logging.getLogger("batchin")

_SWEEP_INTERVAL_SECONDS = 60.0


def _relayed_writer(database: Database, relay: RelayAddress | None) -> GroupCommitWriter | None:
    """An API process of `serve --workers N` on a SQLite file writes through its supervisor's one
    writer (store/write_relay.py); None: the ledger opens this process's own."""
    path = sqlite_file(database)
    if relay is None or path is None:
        return None
    return RelayedWriter(path, writer_address(relay))


async def build_services(
    settings: Settings,
    *,
    migrate: bool = True,
    start_models: bool = True,
    registry: ModelRegistry | None = None,
    relay: RelayAddress | None = None,
) -> Services:
    """Everything the surfaces call. A `registry` passed in is shared (tests load each engine once)
    and is not closed with these services. `relay`: this is an API process of `serve --workers N`
    (batchin/workers.py); its hosted engines, and without Redis its rate limiter, are the
    supervising process's, reached over that relay."""
    database = Database(settings.resolved_database_url, pool_size=settings.db_pool_size)
    if migrate:
        await upgrade(database)
    limiter: RateLimiter
    if settings.redis_url:
        from batchin.core.billing.limits_redis import RedisRateLimiter

        limiter = RedisRateLimiter(settings.redis_url)
    elif relay is not None:
        limiter = limiter_of(relay)
    else:
        limiter = InMemoryRateLimiter()
    auth = AuthService(database, limiter, cache_seconds=settings.auth_cache_seconds)
    ledger = LedgerService(database, _relayed_writer(database, relay))
    metering = MeteringService(ledger)
    owns_registry = registry is None
    if registry is None:
        registry = ModelRegistry(
            load_catalog(settings.models, cny_per_usd=settings.cny_per_usd),
            derived_dir=settings.data_dir / "models",
            relay=relay,
        )
        if start_models:
            await registry.start()
    admission = AdmissionController()
    metrics = InferenceMetrics()
    metrics.watch_admission(admission.snapshot)
    metrics.watch_engines(registry.engine_workers)
    regions = RegionPolicy(settings)
    flow = FlowPolicy(settings, limiter, admission, regions)
    storage = StorageQuota(database, settings.storage_quota_bytes)
    files = FileService(
        database,
        settings.data_dir,
        storage,
        file_retention_days=settings.file_retention_days,
        video_retention_days=settings.video_retention_days,
    )
    links = LinkSigner(
        load_or_create_link_key(settings.media_link_key_file or settings.data_dir / "media" / "link_key"),
        settings.media_link_ttl_seconds,
        settings.own_base_url,
    )
    audit = await AuditService.open(settings, database, registry, ledger.sqlite_writer)
    traces = TraceService.open(settings, database, ledger.sqlite_writer)
    prompts = PromptService(settings, database, audit)
    metrics.watch_write_behind(lambda: {**traces.buffer_stats(), **prompts.recorder.buffer_stats()})
    inference = InferenceService(settings, registry, metering, flow, metrics, audit, traces, prompts)
    served = ServedCalls(audit, traces)  # receipts and traces of every non-text call
    videos = VideoService(settings, database, registry, ledger, flow, admission, files, links, served)
    embeddings = EmbeddingsService(registry, metering, flow, served)
    webhooks = WebhookService(settings, database)
    retention = _retention_job(settings, database, files)
    metrics.watch_stores(retention.stats)
    accounts = AccountService(
        database, auth, default_rpm=settings.default_rate_limit_rpm, served_regions=regions.served
    )
    return Services(
        settings=settings,
        database=database,
        limiter=limiter,
        auth=auth,
        regions=regions,
        accounts=accounts,
        signup=SignupService(database, accounts, limiter, settings),
        sessions=SessionService(database, lifetime_hours=settings.console_session_hours),
        ledger=ledger,
        metering=metering,
        usage=UsageService(database, storage),
        topups=TopupService(database, settings),
        registry=registry,
        catalog=CatalogService(registry, settings.batch_price_ratio),
        admission=admission,
        metrics=metrics,
        inference=inference,
        files=files,
        images=ImageService(registry, metering, flow, files, links, served),
        videos=videos,
        media=LinkedMedia(links, files, videos),
        embeddings=embeddings,
        audio=AudioService(
            registry,
            metering,
            flow,
            served,
            stream_buffer_chunks=settings.stream_buffer_chunks,
            slow_consumer_timeout=settings.slow_consumer_timeout_seconds,
        ),
        audit=audit,
        asserted_records=AssertedRecordService(
            audit,
            metering,
            {"USD": settings.vaas_record_price_usd, "CNY": settings.vaas_record_price_cny},
        ),
        traces=traces,
        webhooks=webhooks,
        batches=BatchService(settings, database, registry, ledger, inference, embeddings, files, webhooks),
        prompts=prompts,
        experiments=ExperimentService(settings, database, prompts, inference, embeddings, audit),
        retention=retention,
        owns_registry=owns_registry,
    )


def _retention_job(settings: Settings, database: Database, files: FileService) -> RetentionJob:
    """The purge of everything kept for a limited time (docs/reference/retention.mdx). The audit
    log is only measured: it is append-only and never purged."""
    rules = [
        RetentionRule(FilePurger(database, files, held=[input_files_in_use()]), settings.file_retention_days),
        RetentionRule(VideoPurger(database, files), settings.video_retention_days),
        RetentionRule(TracePurger(database), settings.trace_retention_days),
        RetentionRule(PromptSamplePurger(database), settings.prompt_sample_retention_days),
        RetentionRule(WebhookPurger(database), settings.webhook_retention_days),
    ]
    return RetentionJob(
        database,
        rules,
        [AuditLogSize(database)],
        interval_seconds=settings.retention_purge_interval_seconds,
        batch_rows=settings.retention_purge_batch_rows,
    )


async def _keep_reservations(services: Services) -> None:
    """Renew the reservations of this process's live calls, then sweep those whose holder has been
    silent for the stale period. A pass runs at least three times per period, so a live holder is
    never taken for dead, whatever the operator set the period to."""
    stale_seconds = services.settings.stale_reservation_seconds
    interval = min(_SWEEP_INTERVAL_SECONDS, stale_seconds / 3)
    while True:
        try:
            await services.ledger.renew_held()
        except Exception:
            log.exception("renewing the reservations of live calls failed")
        try:
            released = await services.ledger.sweep_stale(stale_seconds)
            if released:
                log.warning("released %d stale reservations left by interrupted calls", released)
        except Exception:
            log.exception("stale reservation sweep failed")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def background_work(services: Services) -> AsyncIterator[None]:
    """The durable workers a serving process runs, whichever surface it serves (HTTP or stdio):
    the reservation keeper (renewals and the stale sweep), video jobs and webhook deliveries
    (resuming what a previous process left), and the retention purge (one process at a time)."""
    sweeper = asyncio.get_running_loop().create_task(_keep_reservations(services))
    await services.videos.start()
    await services.webhooks.start()  # durable deliveries: resumes pending ones
    await services.batches.start()  # durable batches: resumes what a previous process left
    await services.experiments.start_worker()  # prompt experiments: resumes interrupted ones
    await services.retention.start()  # expired files, videos, traces, samples, webhook deliveries
    try:
        yield
    finally:
        await services.retention.stop()
        await services.experiments.stop_worker()
        await services.batches.stop()
        await services.webhooks.stop()
        await services.videos.stop()
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


def freeze_startup_heap() -> None:
    """Keep the cyclic garbage collector off what start-up built (modules, schemas, catalog,
    engines: a quarter of a million objects that every full collection would walk again), and let
    young objects gather for longer between collections: under load (a batch dispatching
    thousands of calls a second) collections took over a third of the process's CPU. Only for a
    serving process: what is frozen here is never collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)  # 700 by default: a collection every few calls


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    relay: RelayAddress | None = None,
    freeze_heap: bool = False,
) -> Starlette:
    """The ASGI app: the HTTP API and, mounted under it, MCP at /v1/mcp. Without `services`, its
    lifespan builds them (and migrates) at start-up; with `relay` (an API process of `serve
    --workers N`) it builds them on the supervisor's engines, which has migrated already.
    `freeze_heap`: `freeze_startup_heap` once started (`batchin serve`)."""
    from batchin.http_api.app import build_http_app
    from batchin.http_api.body_limit import LimitedBody
    from batchin.mcp_server.http import MCP_PATH, UnauthorizedAsEnvelope, build_mcp_http_app
    from batchin.mcp_server.runtime import McpRuntime

    runtime = McpRuntime(services=services)
    mcp_app = build_mcp_http_app(runtime, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = services is None
        current = services or await build_services(settings, migrate=relay is None, relay=relay)
        app.state.services = current
        runtime.services = current
        try:
            async with mcp_app.lifespan(mcp_app), background_work(current):
                if freeze_heap:
                    freeze_startup_heap()
                yield
        finally:
            if owned:
                await current.close()

    # An ASGI app as a Route endpoint gets the request unchanged: only /v1/mcp reaches MCP, so
    # unknown /v1 paths and wrong methods keep the API's 404/405 envelopes.
    # Its bodies are capped like the JSON routes', with the same 413 envelope.
    mcp_route = Route(
        MCP_PATH, endpoint=LimitedBody(UnauthorizedAsEnvelope(mcp_app), settings.max_body_bytes)
    )
    app = build_http_app(lifespan=lifespan, extra_routes=[mcp_route])
    if services is not None:
        app.state.services = services
    return app
