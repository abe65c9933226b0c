"""Audio: speech (text → audio), transcriptions and translations (audio → text), in OpenAI's shapes.

Speech takes JSON; transcriptions and translations take multipart form fields, which arrive as
strings (`temperature=0.2`, `timestamp_granularities[]=word`) and are validated by the same
pydantic models. Subtitle renderings (SRT, WebVTT) live here with the shapes they render.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from batchin.errors import InvalidRequest
from batchin.protocol.common import RequestModel

MAX_SPEECH_INPUT_CHARS = 4096  # OpenAI's limit

SpeechResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
TranscriptFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]


class SpeechRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, max_length=MAX_SPEECH_INPUT_CHARS)
    voice: str | None = Field(default=None, description="a voice of the model; omitted: its default")
    response_format: SpeechResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None
    stream_format: Literal["audio", "sse"] = "audio"

    def refuse_unsupported(self) -> None:
        if self.instructions:
            raise InvalidRequest(
                "'instructions' is not supported by BatchIn's speech models; omit it.", param="instructions"
            )
        if self.stream_format != "audio":
            raise InvalidRequest("Only stream_format 'audio' is supported.", param="stream_format")
        if not self.input.strip():
            raise InvalidRequest("'input' must contain text to speak.", param="input")


class TranscriptionRequest(RequestModel):
    """The form fields of /v1/audio/transcriptions and /v1/audio/translations (the file aside)."""

    model: str = Field(min_length=1)
    language: str | None = Field(default=None, description="ISO-639-1 code of the spoken language")
    prompt: str | None = None
    response_format: TranscriptFormat = "json"
    temperature: float = Field(default=0.0, ge=0, le=1)
    timestamp_granularities: list[Literal["word", "segment"]] = Field(default_factory=list)
    stream: bool = False

    def refuse_unsupported(self) -> None:
        if self.stream:
            raise InvalidRequest("Streaming transcriptions are not supported; omit 'stream'.", param="stream")
        if self.timestamp_granularities and self.response_format != "verbose_json":
            raise InvalidRequest(
                "'timestamp_granularities' needs response_format 'verbose_json'.",
                param="timestamp_granularities",
            )

    @property
    def word_timestamps(self) -> bool:
        return "word" in self.timestamp_granularities


class TranscriptionWord(BaseModel):
    word: str
    start: float
    end: float


class TranscriptionSegment(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class DurationUsage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class Transcription(BaseModel):
    text: str
    usage: DurationUsage | None = None


class TranscriptionVerbose(BaseModel):
    task: Literal["transcribe", "translate"]
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]
    words: list[TranscriptionWord] | None = None
    usage: DurationUsage | None = None

    def to_srt(self) -> str:
        blocks = [
            f"{n}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
            for n, s in enumerate(self.segments, start=1)
        ]
        return "\n".join(blocks)

    def to_vtt(self) -> str:
        blocks = [
            f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in self.segments
        ]
        return "WEBVTT\n\n" + "\n".join(blocks)


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"
