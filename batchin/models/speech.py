"""Text to speech on Piper (piper-tts: ONNX Runtime plus its bundled espeak-ng phonemiser), on CPU.

The catalog's weights name the voice's `.onnx` file; its `.onnx.json` config sits beside it. The
public voice names come from `engine_options.voices`, a map of public name → speaker id of the
model (0 for a single-speaker voice), so OpenAI's names (alloy, echo, …) can point at the packaged
voice. `engine_options.default_voice` is used when a request names none.

    speech = await runner.synthesize("Hello", voice="alloy", speed=1.0)   # 16-bit mono PCM
The engine runs on the runner's own worker thread, never on the event loop, one sentence at a time:
a cancelled call stops after the sentence under way (stoppable.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from batchin.errors import ServiceUnavailable
from batchin.models.base import EngineUnavailable, RunnerHealth
from batchin.models.catalog import CatalogEntry
from batchin.models.stoppable import StopFlag, run_stoppable

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["PiperRunner", "SpeechAudio", "SpeechRunner", "StreamsSpeech"]


@dataclass(frozen=True, slots=True)
class SpeechAudio:
    pcm: npt.NDArray[np.int16]  # mono
    sample_rate: int

    @property
    def samples(self) -> int:
        return int(self.pcm.shape[0])


@runtime_checkable
class SpeechRunner(Protocol):
    voices: tuple[str, ...]
    default_voice: str

    async def synthesize(self, text: str, *, voice: str, speed: float) -> SpeechAudio: ...


@runtime_checkable
class StreamsSpeech(Protocol):
    """A speech engine elsewhere (a remote TTS upstream): audio already encoded in the caller's
    format, chunk by chunk as it arrives; raw `pcm` comes at `pcm_sample_rate`."""

    voices: tuple[str, ...]
    default_voice: str
    pcm_sample_rate: int

    def stream_speech(
        self, text: str, *, voice: str, speed: float, response_format: str
    ) -> AsyncGenerator[bytes, None]: ...


def _voice_map(entry: CatalogEntry) -> dict[str, int]:
    raw = entry.engine_options.get("voices")
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"model {entry.id}: engine_options.voices must map voice names to speaker ids")
    voices: dict[str, int] = {}
    for name, speaker in raw.items():
        if not isinstance(speaker, int) or speaker < 0:
            raise ValueError(f"model {entry.id}: voice {name!r} must map to a speaker id ≥ 0")
        voices[str(name)] = speaker
    return voices


def _optional_float(value: object) -> float | None:
    return None if value is None else float(str(value))


class PiperRunner:
    def __init__(self, entry: CatalogEntry) -> None:
        self.entry = entry
        self._speakers = _voice_map(entry)
        self.voices = tuple(self._speakers)
        self.default_voice = str(entry.engine_options.get("default_voice", self.voices[0]))
        if self.default_voice not in self._speakers:
            raise ValueError(f"model {entry.id}: default_voice {self.default_voice!r} is not in voices")
        self._voice: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    async def load(self, weights: Path | None) -> None:
        if weights is None:
            raise EngineUnavailable(f"model {self.entry.id}: piper needs a voice .onnx file")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"piper-{self.entry.id}")
        loop = asyncio.get_running_loop()
        self._voice = await loop.run_in_executor(self._executor, self._open, weights)
        speakers = int(self._voice.config.num_speakers)
        for name, speaker in self._speakers.items():
            if speaker >= speakers:
                raise EngineUnavailable(
                    f"model {self.entry.id}: voice {name!r} maps to speaker {speaker};"
                    f" the model has {speakers} speaker(s)"
                )

    @staticmethod
    def _open(weights: Path) -> Any:
        try:
            from piper import PiperVoice
        except (ImportError, OSError) as exc:
            raise EngineUnavailable(f"piper-tts cannot be imported: {exc}") from exc
        config = weights.with_name(weights.name + ".json")
        if not config.is_file():
            raise EngineUnavailable(f"piper voice config {config} is missing")
        # download_dir: Piper only downloads for some languages' extras; point it at the voice's folder.
        return PiperVoice.load(weights, config_path=config, download_dir=weights.parent)

    async def synthesize(self, text: str, *, voice: str, speed: float) -> SpeechAudio:
        if self._executor is None or self._voice is None:
            raise ServiceUnavailable(f"model {self.entry.id} is not loaded")
        speaker = self._speakers[voice]
        return await run_stoppable(self._executor, lambda stop: self._synthesize(text, speaker, speed, stop))

    def _synthesize(self, text: str, speaker: int, speed: float, stop: StopFlag) -> SpeechAudio:
        from piper import SynthesisConfig

        options = self.entry.engine_options
        config = SynthesisConfig(
            speaker_id=speaker if self._voice.config.num_speakers > 1 else None,
            length_scale=self._voice.config.length_scale / speed,
            # VITS samples noise per call; the catalog may pin it (0 → the same text always gives
            # the same audio, and clearer articulation), else the voice's own defaults apply.
            noise_scale=_optional_float(options.get("noise_scale")),
            noise_w_scale=_optional_float(options.get("noise_w_scale")),
        )
        chunks = []
        with self._lock:
            for chunk in self._voice.synthesize(text, syn_config=config):  # one per sentence
                chunks.append(chunk)
                stop.check()
        rate = int(self._voice.config.sample_rate)
        if not chunks:
            return SpeechAudio(np.zeros(0, np.int16), rate)
        pcm = np.concatenate([chunk.audio_int16_array.reshape(-1) for chunk in chunks])
        return SpeechAudio(pcm.astype(np.int16, copy=False), rate)

    async def close(self) -> None:
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True)
        self._voice = None

    def health(self) -> RunnerHealth:
        if self._closed:
            return RunnerHealth(status="unavailable", reason="closed")
        return RunnerHealth(status=self.entry.status, extra={"voices": list(self.voices)})
