"""Audio in and out through PyAV (FFmpeg inside the `av` wheel): decode any common container to the
16 kHz mono float32 samples Whisper wants, and encode synthesised 16-bit PCM to the response formats
OpenAI's speech endpoint offers.

Both directions are blocking and CPU-bound: call them in a thread. PyAV is imported here only, and
only when a function runs, so importing this module costs nothing.

Formats (`response_format` → container/codec, content type):
    mp3  → MP3 (LAME), audio/mpeg          opus → Ogg/Opus at 48 kHz, audio/opus
    aac  → ADTS AAC, audio/aac             flac → FLAC, audio/flac
    wav  → RIFF WAVE 16-bit, audio/wav     pcm  → raw s16le at 24 kHz, no header, audio/pcm
`pcm` is resampled to 24 kHz because that is the rate OpenAI documents for it, so players written
against OpenAI keep working; Opus only exists at a few rates, 48 kHz being the standard one.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "CONTENT_TYPES",
    "WHISPER_SAMPLE_RATE",
    "AudioDecodeError",
    "DecodedAudio",
    "SpeechFormat",
    "audio_seconds",
    "billable_seconds",
    "decode_audio",
    "encode_pcm16",
]

SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
WHISPER_SAMPLE_RATE = 16_000
PCM_SAMPLE_RATE = 24_000

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

# response_format → (container, codec, output rate or None to keep the source rate)
_ENCODINGS: dict[str, tuple[str, str, int | None]] = {
    "mp3": ("mp3", "libmp3lame", None),
    "opus": ("ogg", "libopus", 48_000),
    "aac": ("adts", "aac", None),
    "flac": ("flac", "flac", None),
    "wav": ("wav", "pcm_s16le", None),
}


class AudioDecodeError(Exception):
    """The bytes are not audio PyAV can decode (the message says why, without internals)."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    samples: npt.NDArray[np.float32]  # mono, WHISPER_SAMPLE_RATE
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def billable_seconds(samples: int, sample_rate: int) -> float:
    """Audio length billed: whole milliseconds, rounded up, so prices stay exact decimals."""
    return math.ceil(samples * 1000 / sample_rate) / 1000


def audio_seconds(data: bytes, response_format: str, *, pcm_sample_rate: int = PCM_SAMPLE_RATE) -> float:
    """The billable length of encoded audio (what a remote speech upstream sent): raw `pcm` is
    16-bit mono at `pcm_sample_rate`, counted from its size; any other format is decoded.
    Raises AudioDecodeError."""
    if response_format == "pcm":
        return billable_seconds(len(data) // 2, pcm_sample_rate)
    decoded = decode_audio(data)
    return billable_seconds(len(decoded.samples), decoded.sample_rate)


def decode_audio(
    data: bytes, *, sample_rate: int = WHISPER_SAMPLE_RATE, max_seconds: float | None = None
) -> DecodedAudio:
    """Decode the first audio stream of any container FFmpeg knows to mono float32 at `sample_rate`.
    Decoding stops with AudioDecodeError past `max_seconds`: a few MB of low-bitrate audio can hold
    hours, which as float32 samples would be gigabytes."""
    import av

    if not data:
        raise AudioDecodeError("the file is empty")
    try:
        with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("the file has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks: list[npt.NDArray[np.float32]] = []
            limit = None if max_seconds is None else int(max_seconds * sample_rate)
            decoded = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(_flat32(out))
                    decoded += len(chunks[-1])
                if limit is not None and decoded > limit:
                    raise AudioDecodeError(f"the audio is longer than {max_seconds:g} seconds")
            chunks.extend(_flat32(out) for out in resampler.resample(None))
    except AudioDecodeError:
        raise
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(f"the file could not be decoded as audio ({type(exc).__name__})") from None
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioDecodeError("the file contains no audio samples")
    return DecodedAudio(samples=samples, sample_rate=sample_rate)


def _flat32(frame: Any) -> npt.NDArray[np.float32]:
    return np.asarray(frame.to_ndarray(), dtype=np.float32).reshape(-1)


def encode_pcm16(pcm: npt.NDArray[np.int16], sample_rate: int, response_format: SpeechFormat) -> bytes:
    """Mono 16-bit PCM → the bytes of `response_format`."""
    if response_format == "pcm":
        if sample_rate == PCM_SAMPLE_RATE:
            return pcm.astype("<i2", copy=False).tobytes()
        return _resample_s16(pcm, sample_rate, PCM_SAMPLE_RATE).astype("<i2", copy=False).tobytes()
    container_format, codec, rate = _ENCODINGS[response_format]
    return _encode(pcm, sample_rate, container_format, codec, rate or sample_rate)


def _frame(pcm: npt.NDArray[np.int16], sample_rate: int) -> Any:
    import av

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout="mono")
    frame.sample_rate = sample_rate
    return frame


def _resample_s16(pcm: npt.NDArray[np.int16], source_rate: int, rate: int) -> npt.NDArray[np.int16]:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    parts = [f.to_ndarray().reshape(-1) for f in resampler.resample(_frame(pcm, source_rate))]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.int16, copy=False) if parts else np.zeros(0, np.int16)


def _encode(
    pcm: npt.NDArray[np.int16], sample_rate: int, container_format: str, codec: str, rate: int
) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as output:
        stream: Any = output.add_stream(codec, rate=rate)
        stream.layout = "mono"
        # Each encoder takes its own sample format (planar float for AAC, s16 for FLAC…).
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for frame in [*resampler.resample(_frame(pcm, sample_rate)), *resampler.resample(None)]:
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return buffer.getvalue()
