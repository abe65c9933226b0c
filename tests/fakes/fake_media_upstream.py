"""The fake OpenAI-compatible upstream (fake_upstream.py) with every other modality an operator
puts behind engine "remote": POST /v1/embeddings, /v1/audio/speech, /v1/audio/transcriptions,
/v1/audio/translations, /v1/images/generations (and GET /v1/files/{name}, where its image links
point). Chat with image parts is fake_upstream.py's chat route, which records the body it got.

Each route answers in OpenAI's wire format, honours the same failure switch as chat
(`config.error_status`), and records what it received in `received`, so tests can assert what
reached the upstream:

    upstream = start_fake_media_upstream()
    upstream.url                        # …/v1
    upstream.media.dimensions = 8       # answer shapes switch at any time
    upstream.received.speech[-1]        # the last speech request's JSON body
    upstream.received.transcriptions[-1]["file"]   # the uploaded bytes, as received

Speech is real audio (a tone, `speech_seconds_per_char` long per input character) in the format
asked for, sent in `speech_chunk_bytes` chunks `config.delay_ms` apart; a client that leaves
mid-audio shows in `stats.streams_cancelled`. Images are real PNGs of the asked size; an image
request waits `image_delay_ms`, and a client that leaves meanwhile shows in
`received.images_cancelled`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from batchin.models.audio_codec import CONTENT_TYPES, encode_pcm16
from tests.fakes.fake_upstream import (
    FakeUpstream,
    FakeUpstreamConfig,
    _Events,
    _EventStream,
    _json,
    error_response,
)

__all__ = ["FakeMediaUpstream", "MediaConfig", "MediaReceived", "start_fake_media_upstream"]

_TONE_RATE = 24_000


@dataclass
class MediaConfig:
    dimensions: int = 8
    embedding_usage: bool = True  # False: answer without `usage` (the caller must estimate)
    embedding_tokens_per_input: int = 7  # the usage reported: this many tokens per input
    speech_seconds_per_char: float = 0.02
    speech_chunk_bytes: int = 2048
    transcript: str = "the fake upstream heard you"
    language: str = "english"
    verbose_json: bool = True  # False: answer verbose_json requests as plain json (an older server)
    image_delay_ms: float = 0.0


@dataclass
class MediaReceived:
    embeddings: list[dict[str, Any]] = field(default_factory=list)
    speech: list[dict[str, Any]] = field(default_factory=list)
    # {"path", "fields": [(name, value)…], "filename", "file": bytes}
    transcriptions: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    images_cancelled: int = 0
    headers: list[dict[str, str]] = field(default_factory=list)  # every media request's headers


def _vector(text: str, dimensions: int) -> list[float]:
    rng = np.random.default_rng(zlib.crc32(text.encode("utf-8")))
    vector = rng.standard_normal(dimensions)
    return [float(x) for x in vector / np.linalg.norm(vector)]


def tone(seconds: float, response_format: str) -> bytes:
    """`seconds` of a 440 Hz tone, encoded as `response_format` (pcm: 24 kHz s16le, as OpenAI's)."""
    t = np.arange(int(seconds * _TONE_RATE)) / _TONE_RATE
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    return encode_pcm16(pcm, _TONE_RATE, response_format)  # type: ignore[arg-type]


def png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


class FakeMediaUpstream(FakeUpstream):
    def __init__(self, config: FakeUpstreamConfig, media: MediaConfig, port: int = 0) -> None:
        self.media = media
        self.received = MediaReceived()
        self._files: dict[str, bytes] = {}
        routes = [
            Route("/v1/embeddings", self._embeddings, methods=["POST"]),
            Route("/v1/audio/speech", self._speech, methods=["POST"]),
            Route("/v1/audio/transcriptions", self._transcription, methods=["POST"]),
            Route("/v1/audio/translations", self._transcription, methods=["POST"]),
            Route("/v1/images/generations", self._images, methods=["POST"]),
            Route("/v1/files/{name}", self._file, methods=["GET"]),
        ]
        super().__init__(config, port, routes)

    def _refusal(self, request: Request) -> Response | None:
        self.received.headers.append(dict(request.headers))
        return error_response(self.config)

    async def _embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.received.embeddings.append(body)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for index, text in enumerate(texts):
            vector = _vector(str(text), self.media.dimensions)
            encoded: Any = vector
            if body.get("encoding_format") == "base64":
                encoded = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if self.media.embedding_usage:
            tokens = self.media.embedding_tokens_per_input * len(texts)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return _json(answer)

    async def _speech(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.received.speech.append(body)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        fmt = body.get("response_format", "mp3")
        audio = tone(len(body["input"]) * self.media.speech_seconds_per_char / body.get("speed", 1.0), fmt)
        size = self.media.speech_chunk_bytes
        chunks = [audio[i : i + size] for i in range(0, len(audio), size)]
        content_type = CONTENT_TYPES[fmt].encode()
        return _EventStream(_Events([], chunks, []), self.config, self.stats, content_type=content_type)

    async def _transcription(self, request: Request) -> Response:
        async with request.form() as form:
            upload = form.get("file")
            fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            record: dict[str, Any] = {"path": request.url.path, "fields": fields}
            if isinstance(upload, UploadFile):
                record.update(filename=upload.filename, file=await upload.read())
        self.received.transcriptions.append(record)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if not record.get("file"):
            return _json({"error": {"message": "file is required", "type": "invalid_request_error"}}, 400)
        asked = dict(fields).get("response_format", "json")
        text = self.media.transcript
        if asked == "text":
            return PlainTextResponse(text)
        if asked != "verbose_json" or not self.media.verbose_json:
            return _json({"text": text})
        words = text.split()
        answer: dict[str, Any] = {
            "task": "translate" if request.url.path.endswith("translations") else "transcribe",
            "language": self.media.language,
            "duration": 1.5,
            "text": text,
            "segments": [
                {"id": 0, "seek": 0, "start": 0.0, "end": 0.8, "text": " " + " ".join(words[:2]),
                 "tokens": [1, 2], "temperature": 0.0, "avg_logprob": -0.2,
                 "compression_ratio": 1.1, "no_speech_prob": 0.01},
                {"id": 1, "seek": 0, "start": 0.8, "end": 1.5, "text": " " + " ".join(words[2:]),
                 "tokens": [3], "temperature": 0.0, "avg_logprob": -0.3,
                 "compression_ratio": 1.2, "no_speech_prob": 0.02},
            ],
        }  # fmt: skip
        if "word" in [v for k, v in fields if k == "timestamp_granularities[]"]:
            answer["words"] = [
                {"word": w, "start": round(i * 0.3, 2), "end": round(i * 0.3 + 0.25, 2)}
                for i, w in enumerate(words)
            ]
        return _json(answer)

    async def _images(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        self.received.images.append(body)
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        deadline = asyncio.get_running_loop().time() + self.media.image_delay_ms / 1000
        while asyncio.get_running_loop().time() < deadline:  # a slow pipeline, watching for the caller
            if await request.is_disconnected():
                self.received.images_cancelled += 1
                return Response(status_code=499)
            await asyncio.sleep(0.01)
        width, height = (int(side) for side in str(body.get("size", "256x256")).split("x"))
        image = png(width, height)
        data = []
        for _ in range(int(body.get("n", 1))):
            if body.get("response_format") == "url":
                name = f"{uuid.uuid4().hex}.png"
                self._files[name] = image
                data.append({"url": f"{self.url}/files/{name}"})
            else:
                data.append({"b64_json": base64.b64encode(image).decode("ascii")})
        return _json({"created": 0, "data": data})

    async def _file(self, request: Request) -> Response:
        image = self._files.get(request.path_params["name"])
        if image is None:
            return _json({"error": {"message": "no such file", "type": "not_found"}}, 404)
        return Response(image, media_type="image/png")


def start_fake_media_upstream(
    config: FakeUpstreamConfig | None = None, *, media: MediaConfig | None = None, **options: Any
) -> FakeMediaUpstream:
    """Start a fake serving chat and media in a background thread; `options`: FakeUpstreamConfig fields."""
    return FakeMediaUpstream(config or FakeUpstreamConfig(**options), media or MediaConfig())
