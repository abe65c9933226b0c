"""The services a serving process holds, as one typed record: built once by the composition root
(app.py's `build_services`) and handed to the surfaces. Lives below app.py so the surfaces can name
its type without importing the root that imports them."""

from __future__ import annotations

from dataclasses import dataclass

from batchin.config import Settings
from batchin.core.accounts.auth import AuthService
from batchin.core.accounts.service import AccountService
from batchin.core.accounts.sessions import SessionService
from batchin.core.accounts.signup import SignupService
from batchin.core.audit.service import AuditService
from batchin.core.batches.service import BatchService
from batchin.core.billing.ledger import LedgerService
from batchin.core.billing.limits import RateLimiter
from batchin.core.billing.metering import MeteringService
from batchin.core.billing.topups import TopupService
from batchin.core.billing.usage import UsageService
from batchin.core.experiments.service import ExperimentService
from batchin.core.media.audio import AudioService
from batchin.core.media.embeddings import EmbeddingsService
from batchin.core.media.files import FileService
from batchin.core.media.images import ImageService
from batchin.core.media.linked import LinkedMedia
from batchin.core.media.videos import VideoService
from batchin.core.prompts.service import PromptService
from batchin.core.regions import RegionPolicy
from batchin.core.retention import RetentionJob
from batchin.core.serving.admission import AdmissionController
from batchin.core.serving.asserted_records import AssertedRecordService
from batchin.core.serving.catalog import CatalogService
from batchin.core.serving.inference import InferenceService
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.traces.service import TraceService
from batchin.core.webhooks.service import WebhookService
from batchin.models.registry import ModelRegistry
from batchin.store.database import Database

__all__ = ["Services"]


@dataclass
class Services:
    settings: Settings
    database: Database
    limiter: RateLimiter
    auth: AuthService
    regions: RegionPolicy  # the entry region of each call, resolved by the surfaces
    accounts: AccountService
    signup: SignupService  # self-service accounts: invites, signup, verification, password sign-in
    sessions: SessionService  # the console's sign-in sessions
    ledger: LedgerService
    metering: MeteringService
    usage: UsageService
    topups: TopupService
    registry: ModelRegistry
    catalog: CatalogService
    admission: AdmissionController
    metrics: InferenceMetrics
    inference: InferenceService
    files: FileService
    images: ImageService
    videos: VideoService
    media: LinkedMedia  # what signed media links open
    embeddings: EmbeddingsService
    audio: AudioService
    audit: AuditService
    asserted_records: AssertedRecordService
    traces: TraceService
    webhooks: WebhookService
    batches: BatchService
    prompts: PromptService
    experiments: ExperimentService
    retention: RetentionJob  # the purge of what outlived its retention, and the store sizes
    owns_registry: bool = True

    async def close(self) -> None:
        await self.retention.stop()
        await self.batches.stop()
        await self.videos.stop()
        await self.webhooks.stop()
        await self.experiments.stop_worker()
        if self.owns_registry:
            await self.registry.close()
        await self.prompts.close()  # writes the runs still buffered
        await self.audit.close()
        await self.traces.close()
        await self.auth.drain()
        await self.topups.close()
        await self.ledger.close()
        await self.limiter.close()
        await self.database.dispose()
