"""Does image (and transcription) work stall streaming chat on the same server?

A fake OpenAI-compatible upstream (its own process) serves the chat model, so the chat path is pure
gateway work on BatchIn's event loop. Streaming chat TTFT p50 is measured on an idle server, then
again while image generations (the tiny random diffusers pipeline) and, when the embedded Whisper
and Piper models are installed, transcriptions of a spoken sentence run back to back on the same
server. Every embedded engine runs in its own worker process at a lower CPU priority
(models/hosted.py), so neither its threads nor its GIL stall the API process's event loop.
Idle and busy phases alternate (3 rounds) so that drift in the machine's other load hits both.
Target: busy p50 / idle p50 < 1.2. Prints one JSON line. BENCH_IMAGES_ONLY=1 skips transcription.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server, fake_upstream, percentile, remote_catalog

CHAT_MODEL = "remote-bench"
IMAGE_MODEL = "tiny-random-image"
SPEECH_MODEL = "piper-en-us-joe-medium"
TRANSCRIBE_MODEL = "whisper-tiny.en"
REQUESTS = 60  # chat requests per condition
ROUNDS = 3
SENTENCE = "The quick brown fox jumps over the lazy dog while the server keeps streaming."


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def bench_catalog(upstream: str) -> Path:
    """The remote chat model plus the built-in image, speech and transcription entries."""
    path = remote_catalog(upstream, CHAT_MODEL)
    default = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "batchin/models/default_catalog.toml").read_text()
    )
    lines = [path.read_text()]
    for model_id in (IMAGE_MODEL, SPEECH_MODEL, TRANSCRIBE_MODEL):
        entry = default["models"].get(model_id)
        if entry is not None:
            lines.append(f"\n[models.{json.dumps(model_id)}]\n")
            lines.extend(f"{json.dumps(k)} = {_toml_value(v)}\n" for k, v in entry.items())
    path.write_text("".join(lines))
    return path


async def chat_ttfts(client: httpx.AsyncClient, count: int) -> list[float]:
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 32,
        "stream": True,
    }
    ttfts: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        first: float | None = None
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if first is None and '"content"' in line:
                    first = time.perf_counter() - start
        ttfts.append(first if first is not None else float("nan"))
        await asyncio.sleep(0.02)
    return ttfts


async def image_load(client: httpx.AsyncClient, stop: asyncio.Event, done: list[float]) -> None:
    body = {"model": IMAGE_MODEL, "prompt": "a busy server", "size": "512x512", "response_format": "b64_json"}
    while not stop.is_set():
        start = time.perf_counter()
        response = await client.post("/v1/images/generations", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"image call failed: {response.status_code} {response.text}")
        done.append(time.perf_counter() - start)


async def transcription_load(
    client: httpx.AsyncClient, audio: bytes, stop: asyncio.Event, done: list[str]
) -> None:
    while not stop.is_set():
        files = {"file": ("speech.wav", audio, "audio/wav")}
        response = await client.post(
            "/v1/audio/transcriptions", data={"model": TRANSCRIBE_MODEL}, files=files
        )
        response.raise_for_status()
        done.append(response.json().get("text", ""))


async def speech(client: httpx.AsyncClient) -> bytes | None:
    """A spoken sentence from the embedded voice, or None when speech/transcription are not served."""
    models = {m["id"] for m in (await client.get("/v1/models")).json()["data"]}
    if os.environ.get("BENCH_IMAGES_ONLY") or not {SPEECH_MODEL, TRANSCRIBE_MODEL} <= models:
        return None
    body = {"model": SPEECH_MODEL, "input": SENTENCE, "voice": "joe", "response_format": "wav"}
    response = await client.post("/v1/audio/speech", json=body)
    return response.content if response.status_code == 200 else None


async def busy_ttfts(
    client: httpx.AsyncClient, count: int, audio: bytes | None, tally: dict[str, list[Any]]
) -> list[float]:
    """Chat TTFTs while image jobs (and transcriptions, given audio) run back to back."""
    stop = asyncio.Event()
    background = [asyncio.create_task(image_load(client, stop, tally["images"]))]
    if audio is not None:
        background.append(asyncio.create_task(transcription_load(client, audio, stop, tally["texts"])))
    await asyncio.sleep(0.5)  # let the engines get going
    try:
        return await chat_ttfts(client, count)
    finally:
        stop.set()
        await asyncio.gather(*background)


async def measure(base: str, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=300) as client:
        warm = {"model": IMAGE_MODEL, "prompt": "warm up", "size": "64x64", "response_format": "b64_json"}
        (await client.post("/v1/images/generations", json=warm)).raise_for_status()  # load the pipeline
        audio = await speech(client)
        if audio is not None:
            files = {"file": ("speech.wav", audio, "audio/wav")}
            await client.post("/v1/audio/transcriptions", data={"model": TRANSCRIBE_MODEL}, files=files)
        await chat_ttfts(client, 10)  # warm the chat path
        # Idle and busy phases alternate, so drift in the machine's other load hits both alike.
        idle: list[float] = []
        images_busy: list[float] = []
        mixed_busy: list[float] = []
        tally: dict[str, list[Any]] = {"images": [], "texts": []}
        per_phase = REQUESTS // ROUNDS
        for _ in range(ROUNDS):
            idle += await chat_ttfts(client, per_phase)
            images_busy += await busy_ttfts(client, per_phase, None, tally)
            if audio is not None:
                idle += await chat_ttfts(client, per_phase)
                mixed_busy += await busy_ttfts(client, per_phase, audio, tally)
    idle_p50 = percentile(idle, 0.5)
    result: dict[str, Any] = {
        "bench": "multimodal_interference",
        "chat_requests_per_phase": REQUESTS,
        "idle_ttft_p50_ms": round(idle_p50 * 1000, 2),
        "image_busy_ttft_p50_ms": round(percentile(images_busy, 0.5) * 1000, 2),
        "image_busy_ttft_p99_ms": round(percentile(images_busy, 0.99) * 1000, 2),
        "image_ttft_p50_ratio": round(percentile(images_busy, 0.5) / idle_p50, 3),
        "target_ratio_below": 1.2,
        "images_during": len(tally["images"]),
        "image_p50_s": round(percentile(tally["images"], 0.5), 3) if tally["images"] else None,
        "transcription_load": audio is not None,
    }
    if audio is not None:
        result |= {
            "image_and_transcription_busy_ttft_p50_ms": round(percentile(mixed_busy, 0.5) * 1000, 2),
            "image_and_transcription_ttft_p50_ratio": round(percentile(mixed_busy, 0.5) / idle_p50, 3),
            "transcriptions_during": len(tally["texts"]),
        }
    return result


def main() -> None:
    with fake_upstream(core=-1, tokens=20, delay_ms=5.0) as upstream:
        catalog = bench_catalog(upstream)
        with batchin_server(core=-1, env={"BATCHIN_MODELS": str(catalog)}) as server:
            result = asyncio.run(measure(server.base, server.api_key))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
