"""Settings: environment variables `BATCHIN_*`, then an optional TOML file named by `BATCHIN_CONFIG`.

Built once at start-up (`Settings.load()`) and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class UsdcChain(BaseModel):
    chain: str
    deposit_address: str
    required_confirmations: int = 12


class LaneConfig(BaseModel):
    """A dedicated lane (the seed's 独立 lane): its users get their own admission pools."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    users: list[str] = Field(default_factory=list, description="user ids bound to this lane")
    max_concurrency: int = Field(default=1, ge=1)
    queue_size: int = Field(default=16, ge=0)
    rpm: int | None = Field(default=None, ge=1, description="requests per minute for the whole lane")


class RegionLimit(BaseModel):
    region: str
    model: str
    rpm: int = Field(ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BATCHIN_", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; SQLite in data_dir if unset"
    )
    models: Path | None = Field(default=None, description="operator's model catalog (TOML)")
    redis_url: str | None = Field(default=None, description="shares rate limits across server processes")
    host: str = "127.0.0.1"
    port: int = 8000
    region: str = "global"
    environment: str = "development"
    admin_token: str | None = Field(default=None, description="bearer token for /metrics from non-loopback")

    max_body_bytes: int = 2 * 1024 * 1024
    # Multipart uploads (audio files): refused with 413 while streaming in, past this size.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    default_rate_limit_rpm: int = 600
    auth_cache_seconds: float = 5.0
    # A reservation still held this long after admission belongs to a call that died with its process.
    stale_reservation_seconds: float = 3600.0
    db_pool_size: int = 10

    # Flow control.
    regions: list[str] = Field(default_factory=list, description="entry regions accepted (default: [region])")
    region_limits: list[RegionLimit] = Field(default_factory=list)
    lanes: list[LaneConfig] = Field(default_factory=list)
    stream_buffer_chunks: int = Field(default=1024, ge=1)
    slow_consumer_timeout_seconds: float = Field(default=10.0, gt=0)

    # Traces (docs/traces.md): the write-behind span buffer, the OTLP receiver's body limit (raw and
    # after gzip), and an optional OTLP/HTTP collector our own spans are pushed to.
    trace_buffer_calls: int = Field(default=10_000, ge=1, description="calls held before the oldest drop")
    trace_flush_seconds: float = Field(default=0.2, gt=0)
    otlp_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector base or /v1/traces URL")
    otlp_headers: str | None = Field(default=None, description="k=v,k2=v2 sent to the collector")

    # Video jobs: how often an idle worker looks for queued jobs, and how long an in_progress job's
    # heartbeat may be silent before its worker is taken for dead and the job is queued again.
    video_poll_seconds: float = Field(default=1.0, gt=0)
    video_job_stale_seconds: float = Field(default=60.0, gt=0)

    # Verifiable audit: the Ed25519 signing key file (default data_dir/vaas/signing_key, made 0600 if
    # missing) and the grid the servers run on, for the carbon estimate (docs/audit.md).
    vaas_key_file: Path | None = None
    grid_gco2_per_kwh: float | None = Field(default=None, ge=0, description="grid gCO2e/kWh")
    energy_source: str | None = Field(default=None, max_length=200, description="e.g. 'Renewable grid mix'")

    public_base_url: str = "http://127.0.0.1:8000"
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = Field(default=None, description="override Stripe's API host (tests)")
    stripe_currency: str = "usd"
    topup_min_cents: int = 100
    topup_max_cents: int = 1_000_000
    usdc_chains: list[UsdcChain] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("BATCHIN_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        return cls(**overrides)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'batchin.db').resolve()}"
