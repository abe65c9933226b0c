"""generate_image and speak: the result comes back as MCP image / audio content, so an agent can
look and listen, then a line of text saying what it is, with the HTTP API's result model as
structured content."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from fastmcp.tools.base import ToolResult
from mcp.types import AudioContent, ContentBlock, ImageContent, TextContent
from pydantic import BaseModel, Field

from batchin.core.media.audio import AudioService
from batchin.core.media.files import FileService
from batchin.core.media.images import ImageService
from batchin.core.media.links import media_id_of
from batchin.mcp_server.caller import current, uses
from batchin.protocol.audio import SpeechRequest
from batchin.protocol.common import validate
from batchin.protocol.images import ImageGenerateRequest, ImagesResponse
from batchin.services import Services
from batchin.tools.registry import ToolSpec


@dataclass(frozen=True, slots=True)
class MediaToolDeps:
    """What generate_image and speak use."""

    images: ImageService
    files: FileService
    audio: AudioService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(images=services.images, files=services.files, audio=services.audio)


async def generate_image(
    prompt: Annotated[str, Field(description="What the image should show.", min_length=1)],
    model: Annotated[str | None, Field(description="An image model id; omitted: the first one.")] = None,
    size: Annotated[str, Field(description="WIDTHxHEIGHT, e.g. 512x512, or 'auto'.")] = "auto",
    n: Annotated[int, Field(description="How many images (1-4).", ge=1, le=4)] = 1,
    seed: Annotated[int | None, Field(description="Seed for a reproducible image.", ge=0)] = None,
    deps: MediaToolDeps = uses(MediaToolDeps),
) -> ToolResult:
    """Text to image. Returns each PNG as image content, plus the images response (data[i].url is
    a signed link to the stored PNG that opens without a key until it expires). Billed per image."""
    call = current()
    fields: dict[str, Any] = {"prompt": prompt, "size": size, "n": n, "response_format": "url"}
    fields |= {k: v for k, v in {"model": model, "seed": seed}.items() if v is not None}
    result = await deps.images.generate(call.ctx, validate(ImageGenerateRequest, fields))
    content: list[ContentBlock] = []
    for image in result.data:
        file_id = media_id_of(image.url or "")  # a signed link naming the stored PNG
        if file_id is None:
            continue
        stored = await deps.files.content(call.ctx.principal.user_id, file_id)
        png = await asyncio.to_thread(Path(stored.path).read_bytes)
        content.append(
            ImageContent(type="image", data=base64.b64encode(png).decode("ascii"), mime_type="image/png")
        )
    links = "\n".join(f"- {image.url}" for image in result.data if image.url)
    described = f"{len(result.data)} PNG image(s), {result.size}, signed links (they expire):\n{links}"
    content.append(TextContent(type="text", text=described))
    return ToolResult(content=content, structured_content=result.model_dump(mode="json"))


class SpeechOutput(BaseModel):
    """What `speak` made: the audio itself is the tool result's audio content."""

    model: str
    content_type: str
    seconds: float = Field(description="Billed audio length.")
    bytes: int


async def speak(
    input: Annotated[str, Field(description="The text to say (up to 4096 characters).", min_length=1)],
    model: Annotated[str, Field(description="A speech model id from list_models.")],
    voice: Annotated[
        str | None, Field(description="One of the model's voices; omitted: its default.")
    ] = None,
    response_format: Annotated[
        Literal["mp3", "opus", "aac", "flac", "wav", "pcm"], Field(description="Audio encoding.")
    ] = "wav",
    speed: Annotated[float, Field(description="0.25-4.0; 1 is normal.", ge=0.25, le=4.0)] = 1.0,
    deps: MediaToolDeps = uses(MediaToolDeps),
) -> ToolResult:
    """Text to speech. Returns the audio as audio content (base64 with its MIME type). Billed per
    second of audio."""
    call = current()
    fields: dict[str, Any] = {
        "input": input,
        "model": model,
        "response_format": response_format,
        "speed": speed,
    }
    if voice is not None:
        fields["voice"] = voice
    request = validate(SpeechRequest, fields)
    result = await deps.audio.speech(call.ctx, request)
    output = SpeechOutput(
        model=request.model, content_type=result.content_type, seconds=result.seconds, bytes=len(result.audio)
    )
    audio = AudioContent(
        type="audio", data=base64.b64encode(result.audio).decode("ascii"), mime_type=result.content_type
    )
    described = f"{output.seconds:.2f} s of {output.content_type} from {output.model} ({output.bytes} bytes)."
    return ToolResult(
        content=[audio, TextContent(type="text", text=described)],
        structured_content=output.model_dump(mode="json"),
    )


TOOLS = [
    ToolSpec(generate_image, "Generate images", output_model=ImagesResponse, scope="inference"),
    ToolSpec(speak, "Text to speech", output_model=SpeechOutput, scope="inference"),
]
