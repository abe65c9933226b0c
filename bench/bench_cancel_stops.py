"""How soon a cancelled call frees its engine (models/stoppable.py), per embedded engine behind its
worker process (the hosted runners the server uses): one long call run to its end, then the same
call cancelled a third of the way in, in the same run.

    full_s          the long call, run to its end
    freed_after_s   from the cancel to the worker's "stopped" (its in_flight back to 0)
    left_s          what the call still had to do when cancelled (full_s - cancel point)
    freed_ratio     freed_after_s / left_s: near 0 when the engine stops at its next stop point,
                    near 1 when it runs on to the end (as before stop points)

Transcription stops at the end of the 30-second window under way (faster-whisper decodes a window,
then yields its segments), so its ratio depends on where the cancel lands in a window. Measured on a
quiet 2-core VM: embeddings 0.157 (one 64-input mini-batch), speech 0.015, transcription 0.767
(45 s of audio: the first of two windows ran out), images 0.001 (full_s 8 to 14 s each).

Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CANCEL_AT = 1 / 3


async def measure(runner: Any, call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    started = time.perf_counter()
    await call()
    full = time.perf_counter() - started
    task = asyncio.ensure_future(call())
    await asyncio.sleep(full * CANCEL_AT)
    cancelled_at = time.perf_counter()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    while runner.worker.in_flight:
        await asyncio.sleep(0.002)
    freed = time.perf_counter() - cancelled_at
    left = full * (1 - CANCEL_AT)
    return {
        "full_s": round(full, 3),
        "freed_after_s": round(freed, 3),
        "left_s": round(left, 3),
        "freed_ratio": round(freed / left, 3),
    }


async def main() -> None:
    import numpy as np

    from batchin.models.audio_codec import decode_audio
    from batchin.models.catalog import Catalog, load_catalog
    from batchin.models.images import ImageParams
    from batchin.models.registry import ModelRegistry
    from batchin.models.speech import SpeechAudio
    from batchin.models.transcription import TranscribeParams
    from tests.audio_fixtures import wav_bytes

    default = load_catalog(None)
    image = default.get("tiny-random-image")
    assert image is not None
    slow = image.model_copy(
        update={"id": "slow-image", "engine_options": {**image.engine_options, "num_inference_steps": 300}}
    )
    chosen = ("all-MiniLM-L6-v2", "piper-en-us-joe-medium", "whisper-tiny.en")
    entries = (*(e for e in default.entries if e.id in chosen), slow)
    registry = ModelRegistry(Catalog(source="bench-cancel", entries=entries))
    try:
        embed = await registry.runner("all-MiniLM-L6-v2")
        speak = await registry.runner("piper-en-us-joe-medium")
        whisper = await registry.runner("whisper-tiny.en")
        draw = await registry.runner("slow-image")
        texts = [
            f"{i}. " + "BatchIn measures how long a call takes and what it costs; " * 10 for i in range(600)
        ]
        reading = " ".join(f"Sentence number {i} of a long reading, spoken slowly." for i in range(40))
        voice = speak.default_voice
        hello = await speak.synthesize("The quick brown fox jumps over the lazy dog.", voice=voice, speed=1.0)
        samples = decode_audio(wav_bytes(SpeechAudio(np.tile(hello.pcm, 15), hello.sample_rate))).samples
        figures = {
            "embeddings": await measure(embed, lambda: embed.embed(texts)),
            "speech": await measure(speak, lambda: speak.synthesize(reading, voice=voice, speed=1.0)),
            "transcription": await measure(
                whisper, lambda: whisper.transcribe(samples, TranscribeParams(task="transcribe"))
            ),
            "images": await measure(draw, lambda: draw.generate(ImageParams("a harbour", 64, 64, n=4))),
        }
    finally:
        await registry.close()
    print(json.dumps({"bench": "cancel_stops", "cancel_at": round(CANCEL_AT, 3), **figures}))


if __name__ == "__main__":
    asyncio.run(main())
