"""/v1/audio/speech (JSON in, audio bytes out), /v1/audio/transcriptions and /v1/audio/translations
(multipart in, JSON or text out): parse, call core, render.

Uploads are capped at `Settings.max_upload_bytes` (env BATCHIN_MAX_UPLOAD_BYTES) while they stream
in (body_limit.py): a declared Content-Length over the cap is refused before reading, and a body
that grows past it is refused at the chunk that crosses it, so an oversized file is never held whole.
A caller that disconnects once its request is read cancels the call (streaming.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Self

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from batchin.core.context import CallContext
from batchin.core.media.audio import AudioService, SpeechResult
from batchin.errors import InvalidRequest
from batchin.http_api.body_limit import limit_body
from batchin.http_api.endpoint import Endpoint, FormBody
from batchin.http_api.rendering import parse_json, render, validate
from batchin.http_api.streaming import ClosingStream, until_disconnect
from batchin.protocol.audio import (
    SpeechRequest,
    Transcription,
    TranscriptionRequest,
    TranscriptionVerbose,
)
from batchin.services import Services

_MAX_FORM_FIELDS = 32


@dataclass(frozen=True, slots=True)
class AudioDeps:
    """What /v1/audio/* use."""

    audio: AudioService
    max_body_bytes: int
    max_upload_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            audio=services.audio,
            max_body_bytes=services.settings.max_body_bytes,
            max_upload_bytes=services.settings.max_upload_bytes,
        )


async def create_speech(request: Request, ctx: CallContext, deps: AudioDeps) -> Response:
    body = await parse_json(request, SpeechRequest, deps.max_body_bytes)
    result = await until_disconnect(request, deps.audio.start_speech(ctx, body))
    if isinstance(result, SpeechResult):
        return Response(result.audio, media_type=result.content_type, headers=ctx.response_headers())
    # A remote model's audio, relayed as it arrives (chunked); its refusals were raised above.
    return ClosingStream(result, media_type=result.content_type, headers=ctx.response_headers())


async def create_transcription(request: Request, ctx: CallContext, deps: AudioDeps) -> Response:
    return await _transcribe(request, ctx, deps, "transcribe")


async def create_translation(request: Request, ctx: CallContext, deps: AudioDeps) -> Response:
    return await _transcribe(request, ctx, deps, "translate")


async def _transcribe(
    request: Request, ctx: CallContext, deps: AudioDeps, task: Literal["transcribe", "translate"]
) -> Response:
    fields, audio, filename = await _read_form(request, deps.max_upload_bytes)
    if task == "translate":
        fields.pop("language", None)  # translations always produce English
    body = validate(TranscriptionRequest, fields)
    work = deps.audio.transcribe(ctx, body, audio, task=task, filename=filename)
    result: TranscriptionVerbose = await until_disconnect(request, work)
    response = _render_transcript(result, body.response_format)
    response.headers.update(ctx.response_headers())
    return response


def _render_transcript(result: TranscriptionVerbose, response_format: str) -> Response:
    if response_format == "text":
        return PlainTextResponse(result.text + "\n")
    if response_format == "srt":
        return PlainTextResponse(result.to_srt())
    if response_format == "vtt":
        return PlainTextResponse(result.to_vtt(), media_type="text/vtt")
    if response_format == "verbose_json":
        return render(result.model_dump(mode="json", exclude_none=True))
    return render(Transcription(text=result.text, usage=result.usage))


async def _read_form(request: Request, max_bytes: int) -> tuple[dict[str, Any], bytes, str | None]:
    """The form's fields (lists for `name[]` fields), the uploaded file's bytes and its name."""
    limited = limit_body(request, max_bytes, subject="Upload", param="file")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Send the audio as multipart/form-data with a 'file' field.", param="file")
    async with limited.form(max_files=1, max_fields=_MAX_FORM_FIELDS) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("A 'file' field with the audio is required.", param="file")
        audio = await upload.read()
        filename = upload.filename
        fields: dict[str, Any] = {}
        for name, value in form.multi_items():
            if name == "file" or not isinstance(value, str):
                continue
            if name.endswith("[]"):
                fields.setdefault(name[:-2], []).append(value)
            else:
                fields[name] = value
    return fields, audio, filename


_AUDIO_ERRORS = (400, 402, 404, 413, 503)
_TRANSCRIPT_TEXT = ("text/plain", "text/vtt")  # response_format text and srt, vtt

ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/audio/speech",
        create_speech,
        "Text to speech; returns the audio bytes (mp3, opus, aac, flac, wav or pcm).",
        request_model=SpeechRequest,
        content_type="audio/mpeg",
        other_content_types=("audio/opus", "audio/aac", "audio/flac", "audio/wav", "audio/pcm"),
        deps=AudioDeps,
        tag="inference",
        errors=_AUDIO_ERRORS,
        scope="inference",
    ),
    Endpoint(
        "POST",
        "/v1/audio/transcriptions",
        create_transcription,
        "Speech to text (multipart: file, model, language, prompt, response_format, temperature, "
        "timestamp_granularities[]).",
        form=FormBody(TranscriptionRequest),
        response_model=Transcription | TranscriptionVerbose,
        other_content_types=_TRANSCRIPT_TEXT,
        deps=AudioDeps,
        tag="inference",
        errors=_AUDIO_ERRORS,
        scope="inference",
    ),
    Endpoint(
        "POST",
        "/v1/audio/translations",
        create_translation,
        "Speech in any supported language to English text (multipart: file, model, prompt, "
        "response_format, temperature).",
        form=FormBody(TranscriptionRequest),
        response_model=Transcription | TranscriptionVerbose,
        other_content_types=_TRANSCRIPT_TEXT,
        deps=AudioDeps,
        tag="inference",
        errors=_AUDIO_ERRORS,
        scope="inference",
    ),
]
