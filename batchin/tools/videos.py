"""create_video / get_video: durable video jobs (/v1/videos). With wait=true, create_video reports
progress notifications until the job ends."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Self

from fastmcp import Context
from pydantic import Field

from batchin.core.media.videos import VideoService
from batchin.mcp_server.caller import current, uses
from batchin.protocol.common import validate
from batchin.protocol.videos import Video, VideoCreateRequest
from batchin.services import Services
from batchin.tools.registry import ToolSpec

_POLL_SECONDS = 0.5
_DONE = ("completed", "failed")


@dataclass(frozen=True, slots=True)
class VideoToolDeps:
    """What the video tools use."""

    videos: VideoService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(videos=services.videos)


async def create_video(
    mcp_context: Context,
    prompt: Annotated[str, Field(description="What the video should show.", min_length=1)],
    model: Annotated[str | None, Field(description="A video model id; omitted: the first one.")] = None,
    seconds: Annotated[int | None, Field(description="Length in seconds.", ge=1)] = None,
    size: Annotated[str | None, Field(description="WIDTHxHEIGHT.")] = None,
    seed: Annotated[int | None, Field(description="Seed for a reproducible video.", ge=0)] = None,
    wait: Annotated[
        bool,
        Field(
            description="Wait for the job to end, with progress notifications, instead of returning at once."
        ),
    ] = False,
    deps: VideoToolDeps = uses(VideoToolDeps),
) -> Video:
    """Start a text-to-video job. Returns the video job (status queued → in_progress → completed or
    failed; output_url is a signed link to the MP4 that opens without a key once the job is completed).
    Poll with get_video, or pass wait=true."""
    call = current()
    fields: dict[str, Any] = {"prompt": prompt}
    fields |= {
        k: v
        for k, v in {"model": model, "seconds": seconds, "size": size, "seed": seed}.items()
        if v is not None
    }
    video = await deps.videos.submit(call.ctx, validate(VideoCreateRequest, fields))
    while wait and video.status not in _DONE:
        await mcp_context.report_progress(video.progress, 100, f"video {video.id}: {video.status}")
        await asyncio.sleep(_POLL_SECONDS)
        video, receipt = await deps.videos.retrieve(call.ctx.principal.user_id, video.id)
        call.add_receipt(receipt)  # the finished job's receipt, in the result's _meta
    if wait:
        await mcp_context.report_progress(100, 100, f"video {video.id}: {video.status}")
    return video


async def get_video(
    video_id: Annotated[str, Field(description="The id create_video returned.")],
    deps: VideoToolDeps = uses(VideoToolDeps),
) -> Video:
    """A video job's current status and progress (0-100); output_url (a signed link) opens the MP4
    once it is completed, and record_id names its signed audit record (its receipt is in the
    result's _meta)."""
    call = current()
    video, receipt = await deps.videos.retrieve(call.ctx.principal.user_id, video_id)
    call.add_receipt(receipt)
    return video


def video_text(video: Video) -> str:
    line = f"Video {video.id}: {video.status}, {video.progress}%"
    line += f" ({video.model}, {video.seconds} s, {video.size})."
    if video.error is not None:
        return f"{line} Error {video.error.code}: {video.error.message}"
    if video.status == "completed" and video.output_url:
        return f"{line} MP4: {video.output_url}"
    return f"{line} Subscribe to batchin://videos/{video.id} or call get_video to follow it."


TOOLS = [
    ToolSpec(create_video, "Create a video", scope="inference", summary=video_text),
    ToolSpec(get_video, "Get a video job", read_only=True, scope="inference", summary=video_text),
]
