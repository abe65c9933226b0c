"""transcribe: audio given inline (base64) or as a stored file id, through /v1/audio/transcriptions'
core call; returns the verbose transcript (text, language, duration, segments)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import Field

from batchin.core.media.audio import AudioService
from batchin.core.media.files import FileService
from batchin.errors import InvalidRequest, PayloadTooLarge
from batchin.mcp_server.caller import current, uses
from batchin.protocol.audio import TranscriptionRequest, TranscriptionVerbose
from batchin.protocol.common import validate
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class TranscriptionToolDeps:
    """What transcribe uses."""

    audio: AudioService
    files: FileService
    max_upload_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(
            audio=services.audio,
            files=services.files,
            max_upload_bytes=services.settings.max_upload_bytes,
        )


async def transcribe(
    model: Annotated[str, Field(description="A transcription model id from list_models.")],
    audio_base64: Annotated[
        str | None, Field(description="The audio file's bytes, base64 (wav, mp3, flac, ogg, webm, m4a …).")
    ] = None,
    file_id: Annotated[
        str | None, Field(description="Or: the id of an uploaded file holding the audio.")
    ] = None,
    language: Annotated[
        str | None, Field(description="ISO-639-1 code of the spoken language, if known.")
    ] = None,
    prompt: Annotated[str | None, Field(description="Words or style to bias the transcript towards.")] = None,
    task: Annotated[
        Literal["transcribe", "translate"],
        Field(description="'translate' gives English text from any language."),
    ] = "transcribe",
    timestamp_granularities: Annotated[
        list[Literal["word", "segment"]], Field(description="Add 'word' for word timestamps.")
    ] = ["segment"],  # noqa: B006 - a schema default, never mutated
    deps: TranscriptionToolDeps = uses(TranscriptionToolDeps),
) -> TranscriptionVerbose:
    """Speech to text. Give exactly one of audio_base64 or file_id. The text content is the
    transcript; the structured content adds language, duration and timed segments. Billed per
    second of audio."""
    call = current()
    audio = await _audio_bytes(deps, call.ctx.principal.user_id, audio_base64, file_id)
    fields: dict[str, Any] = {
        "model": model,
        "response_format": "verbose_json",
        "timestamp_granularities": timestamp_granularities,
    }
    if language is not None and task == "transcribe":
        fields["language"] = language
    if prompt is not None:
        fields["prompt"] = prompt
    request = validate(TranscriptionRequest, fields)
    return await deps.audio.transcribe(call.ctx, request, audio, task=task)


async def _audio_bytes(
    deps: TranscriptionToolDeps, user_id: str, audio_base64: str | None, file_id: str | None
) -> bytes:
    limit = deps.max_upload_bytes
    if (audio_base64 is None) == (file_id is None):
        raise InvalidRequest("Give exactly one of 'audio_base64' or 'file_id'.", param="audio_base64")
    if audio_base64 is not None:
        if len(audio_base64) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"Audio exceeds the limit of {limit} bytes.", param="audio_base64")
        try:
            return base64.b64decode(audio_base64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("'audio_base64' is not valid base64.", param="audio_base64") from None
    assert file_id is not None
    stored = await deps.files.content(user_id, file_id)
    if stored.bytes > limit:
        raise PayloadTooLarge(f"Audio exceeds the limit of {limit} bytes.", param="file_id")
    return await asyncio.to_thread(Path(stored.path).read_bytes)


def transcript_text(result: TranscriptionVerbose) -> str:
    return result.text or "(no speech recognised)"


TOOLS = [ToolSpec(transcribe, "Speech to text", scope="inference", summary=transcript_text)]
