"""Audio engines below core: the PyAV codec (every response format, decoding anything, refusing
garbage), billing's millisecond rounding, and the Piper and faster-whisper
runners on the packaged weights (slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batchin.models.audio_codec import (
    CONTENT_TYPES,
    AudioDecodeError,
    SpeechFormat,
    billable_seconds,
    decode_audio,
    encode_pcm16,
)
from batchin.models.catalog import load_catalog
from batchin.models.hosted_speech import HostedSpeechRunner
from batchin.models.hosted_transcription import HostedTranscriptionRunner
from batchin.models.registry import ModelRegistry
from batchin.models.speech import SpeechAudio
from batchin.models.transcription import TranscribeParams
from batchin.models.weights import sha256_file
from tests.audio_fixtures import (
    PIPER,
    SENTENCE,
    WHISPER_BASE,
    WHISPER_TINY_EN,
    normalised,
    spoken,
    wav_bytes,
)

RATE = 22_050


def tone(seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * 440 * t) * 12_000).astype(np.int16)


# -- codec -------------------------------------------------------------------------------------

MAGIC = {
    "mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3"),
    "opus": (b"OggS",),
    "aac": (b"\xff\xf1", b"\xff\xf9"),
    "flac": (b"fLaC",),
    "wav": (b"RIFF",),
}


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_each_format_encodes_and_decodes_back_to_the_same_length(fmt: SpeechFormat) -> None:
    encoded = encode_pcm16(tone(1.0), RATE, fmt)
    assert encoded.startswith(MAGIC[fmt])
    decoded = decode_audio(encoded)
    assert decoded.sample_rate == 16_000
    assert decoded.seconds == pytest.approx(1.0, abs=0.08)  # codec padding only


def test_pcm_is_raw_little_endian_16_bit_at_24_khz() -> None:
    encoded = encode_pcm16(tone(1.0), RATE, "pcm")
    assert len(encoded) % 2 == 0
    assert len(encoded) // 2 == pytest.approx(24_000, abs=32)


def test_pcm_at_24_khz_is_passed_through_untouched() -> None:
    pcm = tone(0.5, 24_000)
    assert encode_pcm16(pcm, 24_000, "pcm") == pcm.astype("<i2").tobytes()


def test_lossless_flac_round_trips_exactly_at_16_khz() -> None:
    pcm = tone(0.5, 16_000)
    decoded = decode_audio(encode_pcm16(pcm, 16_000, "flac"))
    assert np.allclose(decoded.samples, pcm / 32768.0, atol=1e-6)


def test_content_types_are_openais() -> None:
    assert CONTENT_TYPES == {
        "mp3": "audio/mpeg",
        "opus": "audio/opus",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }


def test_stereo_48k_input_is_mixed_down_and_resampled() -> None:
    import io
    import wave

    left = tone(1.0, 48_000)
    stereo = np.stack([left, left], axis=1).reshape(-1)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(48_000)
        out.writeframes(stereo.astype("<i2").tobytes())
    decoded = decode_audio(buffer.getvalue())
    assert decoded.samples.ndim == 1
    assert decoded.seconds == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b"this is plainly not audio, just a sentence of text" * 20, None),
        (b"\x00" * 4096, None),
        (b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 16, None),
    ],
)
def test_undecodable_bytes_raise_audio_decode_error(data: bytes, reason: str | None) -> None:
    with pytest.raises(AudioDecodeError) as caught:
        decode_audio(data)
    if reason is not None:
        assert str(caught.value) == reason


@pytest.mark.parametrize(
    ("samples", "rate", "seconds"),
    [(16_000, 16_000, 1.0), (1, 16_000, 0.001), (16_001, 16_000, 1.001), (22_050 * 3 + 1, 22_050, 3.001)],
)
def test_billable_seconds_round_up_to_the_millisecond(samples: int, rate: int, seconds: float) -> None:
    assert billable_seconds(samples, rate) == seconds


# -- engines (slow) ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_piper_speaks_16_bit_mono_at_the_voice_rate(model_registry: ModelRegistry) -> None:
    audio = await spoken(model_registry)
    assert audio.sample_rate == 22_050
    assert audio.pcm.dtype == np.int16
    assert 1.5 < audio.samples / audio.sample_rate < 5.0
    assert int(np.abs(audio.pcm).max()) > 1000  # not silence


@pytest.mark.slow
async def test_piper_speed_shortens_the_audio(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(PIPER)
    assert isinstance(runner, HostedSpeechRunner)
    # Piper draws phoneme durations with noise, so lengths vary run to run: compare far-apart speeds.
    slow = await runner.synthesize(SENTENCE, voice="joe", speed=0.5)
    fast = await runner.synthesize(SENTENCE, voice="joe", speed=2.0)
    assert fast.samples < slow.samples * 0.5  # nominally a quarter


@pytest.mark.slow
async def test_piper_voices_come_from_the_catalog(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(PIPER)
    assert isinstance(runner, HostedSpeechRunner)
    assert runner.default_voice == "joe"
    assert {"joe", "alloy", "echo", "nova", "shimmer"} <= set(runner.voices)


@pytest.mark.slow
async def test_whisper_tiny_en_transcribes_the_packaged_voice(model_registry: ModelRegistry) -> None:
    runner = await model_registry.runner(WHISPER_TINY_EN)
    assert isinstance(runner, HostedTranscriptionRunner)
    assert runner.english_only
    audio = decode_audio(wav_bytes(await spoken(model_registry)))
    transcript = await runner.transcribe(
        audio.samples, TranscribeParams(task="transcribe", word_timestamps=True)
    )
    assert normalised(transcript.text) == normalised(SENTENCE)
    words = [w for s in transcript.segments for w in s.words]
    assert [normalised(w.word) for w in words] == normalised(SENTENCE).split()
    assert all(0 <= w.start <= w.end <= audio.seconds + 0.05 for w in words)


@pytest.mark.slow
async def test_whisper_base_is_assembled_into_the_configured_folder(tmp_path: Path) -> None:
    entry = load_catalog(None).get(WHISPER_BASE)
    assert entry is not None
    entry = entry.model_copy(
        update={"engine_options": {**entry.engine_options, "assemble_dir": str(tmp_path)}}
    )
    registry = ModelRegistry(load_catalog(None).model_copy(update={"entries": (entry,)}))
    try:
        runner = await registry.runner(WHISPER_BASE)
        assert isinstance(runner, HostedTranscriptionRunner)
        folder = tmp_path / WHISPER_BASE
        assert sha256_file(folder / "model.bin") == entry.engine_options["model_bin_sha256"]
        assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
        assert not runner.english_only
        assert {"en", "de", "fr", "zh"} <= runner.languages
    finally:
        await registry.close()


def test_speech_audio_counts_samples() -> None:
    audio = SpeechAudio(np.zeros(441, np.int16), 22_050)
    assert audio.samples == 441


def test_decoding_stops_past_the_length_limit() -> None:
    encoded = encode_pcm16(tone(3.0), RATE, "flac")
    assert decode_audio(encoded, max_seconds=3.5).seconds == pytest.approx(3.0, abs=0.01)
    with pytest.raises(AudioDecodeError, match=r"^the audio is longer than 1\.5 seconds$"):
        decode_audio(encoded, max_seconds=1.5)
