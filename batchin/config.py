"""Settings: environment variables `BATCHIN_*`, then an optional TOML file named by `BATCHIN_CONFIG`.

Built once at start-up (`Settings.load()`) and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import ipaddress
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
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
    regions: list[str] = Field(
        default_factory=list, description="entry regions the lane's users may use (empty: any)"
    )


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
    # Behind a proxy on the same machine every caller arrives from loopback: turn this off there so
    # that /metrics needs the admin token from everyone.
    metrics_loopback_trusted: bool = True

    max_body_bytes: int = 2 * 1024 * 1024
    # Multipart uploads (audio files): refused with 413 while streaming in, past this size.
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    default_rate_limit_rpm: int = 600
    auth_cache_seconds: float = 5.0
    # A reservation whose holder has not renewed it for this long belongs to a call that died with
    # its process (live calls, however long, are renewed every min(60 s, this / 3)).
    stale_reservation_seconds: float = Field(default=3600.0, gt=0)
    db_pool_size: int = 10

    # Flow control.
    regions: list[str] = Field(default_factory=list, description="entry regions accepted (default: [region])")
    region_limits: list[RegionLimit] = Field(default_factory=list)
    # Peers (CIDRs; env "a,b" or a JSON list) whose X-BatchIn-Region names the entry region as is;
    # from anyone else the header only chooses among the key's own regions (core/regions.py).
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    lanes: list[LaneConfig] = Field(default_factory=list)
    stream_buffer_chunks: int = Field(default=1024, ge=1)
    slow_consumer_timeout_seconds: float = Field(default=10.0, gt=0)

    # Traces (docs/reference/traces.mdx): the write-behind span buffer, the OTLP receiver's body
    # limit (raw and after gzip), and an optional OTLP/HTTP collector our own spans are pushed to.
    trace_buffer_calls: int = Field(default=10_000, ge=1, description="calls held before the oldest drop")
    trace_flush_seconds: float = Field(default=0.2, gt=0)
    otlp_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector base or /v1/traces URL")
    otlp_headers: str | None = Field(default=None, description="k=v,k2=v2 sent to the collector")

    # Video jobs: how often an idle worker looks for queued jobs, and how long an in_progress job's
    # heartbeat may be silent before its worker is taken for dead and the job is queued again.
    video_poll_seconds: float = Field(default=1.0, gt=0)
    video_job_stale_seconds: float = Field(default=60.0, gt=0)

    # Batches (docs in core/batches/service.py). A task costs `batch_price_ratio` of the standard price
    # unless its model's catalog entry sets pricing.batch_discount. A process runs at most
    # `batch_max_in_flight` tasks at once, claimed `batch_claim_chunk` at a time under a lease of
    # `batch_lease_seconds` (renewed while they run; a dead process's tasks are claimed again after it).
    batch_price_ratio: Decimal = Field(default=Decimal("0.5"), gt=0, le=1)
    batch_max_in_flight: int = Field(default=256, ge=1, le=100_000)
    batch_claim_chunk: int = Field(default=128, ge=1, le=10_000)
    batch_lease_seconds: float = Field(default=60.0, gt=0)
    batch_poll_seconds: float = Field(default=0.5, gt=0)
    # Transient failures (engine errors, upstream 5xx, lost workers) a task survives before it fails;
    # retry n waits batch_retry_base_seconds * 2^(n-1) (at most 5 minutes). Rate limits are waited out.
    batch_max_retries: int = Field(default=5, ge=0, le=100)
    batch_retry_base_seconds: float = Field(default=1.0, ge=0)
    batch_max_tasks: int = Field(default=5_000_000, ge=1)
    # POST /v1/files: the largest upload (streamed to disk; a million-line batch file is ~200 MB).
    file_upload_max_bytes: int = Field(default=2 * 1024**3, ge=1024)

    # Storage and retention (docs/reference/retention.mdx). Each user's stored files (uploads,
    # images returned by URL, video outputs, batch result files) may hold at most
    # `storage_quota_bytes` (0: no limit); a write past it is refused with 413
    # storage_quota_exceeded before anything is stored. The purge job deletes, every
    # `retention_purge_interval_seconds` in one process at a time, what is older than its retention
    # (days; 0 keeps that kind for ever), `retention_purge_batch_rows` rows per transaction. Audit
    # records and the transparency log are append-only and never purged.
    storage_quota_bytes: int = Field(default=5 * 1024**3, ge=0)
    file_retention_days: float = Field(default=30.0, ge=0)
    video_retention_days: float = Field(default=7.0, ge=0)
    trace_retention_days: float = Field(default=30.0, ge=0)
    prompt_sample_retention_days: float = Field(default=30.0, ge=0)
    webhook_retention_days: float = Field(default=30.0, ge=0)
    retention_purge_interval_seconds: float = Field(default=3600.0, gt=0)
    retention_purge_batch_rows: int = Field(default=1000, ge=1, le=100_000)

    # Webhooks (core/webhooks/service.py). Only public addresses are called unless a host name or a network
    # (CIDR) is allowed here; env BATCHIN_WEBHOOK_ALLOWED_HOSTS takes a JSON list or "a,b,c".
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Delays before each retry (attempt n+1 waits the n-th); their sum bounds how long we keep
    # trying (this default: ~23.6 h over 8 attempts). Each delay is spread by ± jitter.
    webhook_retry_schedule_seconds: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 28800.0, 28800.0], max_length=30
    )
    webhook_retry_jitter: float = Field(default=0.1, ge=0, le=0.5)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)
    # The SecretBox key that encrypts signing secrets at rest (default data_dir/webhooks/secret_key).
    webhook_key_file: Path | None = None

    # Prompt registry and experiments (core/prompts/service.py). Runs are recorded write-behind; each version
    # keeps its newest `prompt_samples_per_version` chat runs for replay. A new version of a registry
    # with a promoted baseline starts an experiment (unless disabled) that replays up to
    # `prompt_experiment_samples` of them at `fill` priority, temperature 0 and a fixed seed. The
    # candidate is promoted only when the pass rate reaches `prompt_promotion_min_pass_rate` and its
    # average latency and cost exceed the baseline's by at most the given fractions.
    prompt_buffer_runs: int = Field(default=10_000, ge=1)
    prompt_flush_seconds: float = Field(default=0.2, gt=0)
    prompt_samples_per_version: int = Field(default=20, ge=0, le=1000)
    prompt_auto_experiments: bool = True
    prompt_experiment_samples: int = Field(default=5, ge=1, le=100)
    prompt_experiment_judge: Literal["deterministic_replay", "embedding_similarity"] = "deterministic_replay"
    prompt_judge_embedding_model: str = "all-MiniLM-L6-v2"
    prompt_similarity_threshold: float = Field(default=0.9, ge=0, le=1)
    prompt_replay_seed: int = 0
    prompt_promotion_min_pass_rate: float = Field(default=0.9, ge=0, le=1)
    prompt_promotion_max_latency_increase: float = Field(default=0.25, ge=-1)
    prompt_promotion_max_cost_increase: float = Field(default=0.1, ge=-1)
    prompt_experiment_lease_seconds: float = Field(default=60.0, gt=0)
    prompt_experiment_poll_seconds: float = Field(default=2.0, gt=0)

    # Verifiable audit: the Ed25519 signing key file (default data_dir/vaas/signing_key, made 0600 if
    # missing) and the grid the servers run on, for the carbon estimate (docs/reference/audit.mdx).
    vaas_key_file: Path | None = None
    grid_gco2_per_kwh: float | None = Field(default=None, ge=0, description="grid gCO2e/kWh")
    energy_source: str | None = Field(default=None, max_length=200, description="e.g. 'Renewable grid mix'")
    # What one caller-asserted record (POST /v1/vaas) costs, in USD like the catalog's prices: it is
    # signed and logged for good, so it is billed, per record (core/serving/asserted_records.py).
    vaas_record_price_usd: Decimal = Field(default=Decimal("0.001"), ge=0)
    vaas_record_price_cny: Decimal = Field(default=Decimal("0.007"), ge=0, description="CNY accounts' price")

    # Two entries, one product (docs/reference/billing.mdx). An account's currency (USD or CNY) is
    # fixed when it is opened; CNY accounts pay each model's `pricing_cny`, or, for a catalog entry
    # without one, its USD prices times `cny_per_usd`, converted once when the catalog is loaded.
    cny_per_usd: Decimal | None = Field(default=None, gt=0, max_digits=18, decimal_places=9)
    # Which entry a request came in by (http_api/entries.py): "host=global,host2=china,/cn=china"
    # (a host name, or a path prefix starting with "/"), or a JSON object of the same. Requests that
    # match none are the global entry's.
    entries: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)

    public_base_url: str = "http://127.0.0.1:8000"
    # Generated media links (images' data[].url, a video's output_url) open without a key: each is
    # signed (HMAC-SHA256 over the file id and expiry) with the key in this file (default
    # data_dir/media/link_key, made 0600 if missing) and valid this long (core/media/links.py).
    media_link_key_file: Path | None = None
    media_link_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=366 * 24 * 3600)
    # Documents with absolute links (llms.txt, agents.md, the MCP server card and catalog) name
    # public_base_url when it is set. Otherwise they name the host the caller used only when it is
    # one of these, localhost, 127.0.0.1, ::1 or the bind host; any other Host header (which the
    # caller controls) gets the bind address and port (http_api/origin.py). Generated media links
    # follow the same rule. Env: a JSON list or "a,b" of host names.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # MCP over HTTP checks Host/Origin (DNS-rebinding protection): loopback and public_base_url's
    # host are accepted, plus these (env: a JSON list or "a,b"; patterns like "*.example.com:*").
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    mcp_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    stripe_secret_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = Field(default=None, description="override Stripe's API host (tests)")
    topup_min_cents: int = 100
    # Self-service accounts (the console): closed (operator's CLI only), invite (a code from
    # `batchin invites create`) or open.
    signup: Literal["closed", "invite", "open"] = "closed"
    # The scopes of the one key a self-service account starts with.
    signup_key_scopes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["inference", "account:read", "keys:write", "billing", "batches"]
    )
    # Verification mail: smtp://[user:password@]host:port (or smtps://). Unset: accounts opened
    # through the console are verified at once (there is no mail to confirm them with).
    smtp_url: str | None = None
    smtp_from: str = "BatchIn <no-reply@batchin.local>"
    console_session_hours: float = 24 * 7
    # Sign-in attempts per minute, per email address and per client address.
    login_attempts_per_minute: int = 10
    topup_max_cents: int = 1_000_000
    usdc_chains: list[UsdcChain] = Field(default_factory=list)

    @field_validator(
        "webhook_allowed_hosts",
        "mcp_allowed_hosts",
        "mcp_allowed_origins",
        "allowed_hosts",
        "trusted_proxies",
        "signup_key_scopes",
        mode="before",
    )
    @classmethod
    def _split_allowed_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("entries", mode="before")
    @classmethod
    def _split_entries(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = [part.partition("=") for part in text.split(",") if part.strip()]
            return {match.strip(): entry.strip() for match, _, entry in pairs}
        return value

    @field_validator("entries")
    @classmethod
    def _known_entries(cls, entries: dict[str, str]) -> dict[str, str]:
        # Refused at start-up: a typo here would quietly send a China host's users to the global entry.
        for match, entry in entries.items():
            if not match or entry not in ("global", "china"):
                raise ValueError(
                    f"entry {match!r}={entry!r}: expected HOST=global|china or /PREFIX=global|china"
                )
        return entries

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, networks: list[str]) -> list[str]:
        # Refused at start-up, not on the first request: a typo here must not trust nobody silently.
        for network in networks:
            ipaddress.ip_network(network, strict=False)
        return networks

    @field_validator("webhook_retry_schedule_seconds")
    @classmethod
    def _non_negative_delays(cls, delays: list[float]) -> list[float]:
        if any(delay < 0 for delay in delays):
            raise ValueError("retry delays must be >= 0")
        return delays

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
    def public_base_url_configured(self) -> bool:
        """Whether the operator set public_base_url (else it is only the default)."""
        return "public_base_url" in self.model_fields_set

    @property
    def own_base_url(self) -> str:
        """The base of links built with no request to say how the caller reached us: public_base_url
        when set, else this server's bind address and port (`serve --port 9000` links to 9000)."""
        if self.public_base_url_configured:
            return self.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'batchin.db').resolve()}"
