"""/v1/videos: asynchronous video jobs. Creation takes the seed's JSON or the openai SDK's multipart
form; both become one VideoCreateRequest. A completed job, and its MP4, are served with the job's
receipt headers (the submitting call's traceparent and run id, the audit record's X-VaaS-*)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.media.videos import VideoService
from batchin.errors import InvalidRequest
from batchin.http_api.body_limit import limit_body
from batchin.http_api.endpoint import Endpoint, FormBody, QueryParam
from batchin.http_api.origin import PublicOrigin
from batchin.http_api.rendering import parse_json, query_int, render, validate
from batchin.http_api.routes.files import file_response
from batchin.protocol.videos import Video, VideoCreateRequest, VideoDeleted, VideoList
from batchin.services import Services

_FORM_FIELDS = ("prompt", "model", "seconds", "size", "duration_seconds", "aspect_ratio", "seed")


@dataclass(frozen=True, slots=True)
class VideoDeps:
    """What /v1/videos* use."""

    videos: VideoService
    max_body_bytes: int
    origin: PublicOrigin  # the base of output_url links

    @classmethod
    def from_services(cls, services: Services) -> Self:
        settings = services.settings
        return cls(
            videos=services.videos,
            max_body_bytes=settings.max_body_bytes,
            origin=PublicOrigin.from_settings(settings),
        )


async def _create_body(request: Request, max_bytes: int) -> VideoCreateRequest:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        return await parse_json(request, VideoCreateRequest, max_bytes)
    # Capped while it streams in: a form sent without Content-Length would otherwise be spooled whole.
    async with limit_body(request, max_bytes).form(max_files=1, max_fields=32) as form:
        if isinstance(form.get("input_reference"), UploadFile):
            raise InvalidRequest(
                "input_reference (image-to-video) is not supported.", param="input_reference"
            )
        data: dict[str, Any] = {}
        for name in _FORM_FIELDS:
            value = form.get(name)
            if isinstance(value, str):
                data[name] = value
    return validate(VideoCreateRequest, data)


async def create_video(request: Request, ctx: CallContext, deps: VideoDeps) -> Response:
    body = await _create_body(request, deps.max_body_bytes)
    video = await deps.videos.submit(ctx, body, base=deps.origin.of(request))
    response = render(video)
    response.headers.update(ctx.response_headers())
    return response


async def retrieve_video(request: Request, ctx: CallContext, deps: VideoDeps) -> Response:
    video, receipt = await deps.videos.retrieve(
        ctx.principal.user_id, request.path_params["video_id"], base=deps.origin.of(request)
    )
    response = render(video)
    response.headers.update(receipt)  # the job's receipt headers, once it is completed
    return response


async def list_videos(request: Request, ctx: CallContext, deps: VideoDeps) -> Response:
    videos = await deps.videos.list(
        ctx.principal.user_id,
        limit=query_int(request, "limit", 20),
        order=request.query_params.get("order", "desc"),
        after=request.query_params.get("after") or None,
        base=deps.origin.of(request),
    )
    return render(videos)


async def retrieve_video_content(request: Request, ctx: CallContext, deps: VideoDeps) -> Response:
    content, receipt = await deps.videos.content(
        ctx.principal.user_id, request.path_params["video_id"], request.query_params.get("variant", "video")
    )
    response = file_response(content, ctx)
    response.headers.update(receipt)  # the receipt of the job that made the MP4
    return response


async def delete_video(request: Request, ctx: CallContext, deps: VideoDeps) -> Response:
    deleted = await deps.videos.delete(ctx.principal.user_id, request.path_params["video_id"])
    return render(deleted)


_ID = "/v1/videos/{video_id}"

ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/videos",
        create_video,
        "Queue a text-to-video job (JSON as in the seed, or multipart as the openai SDK sends); "
        "reserves the price of its seconds, billed once when it completes.",
        request_model=VideoCreateRequest,
        form=FormBody(VideoCreateRequest, files=(), urlencoded=True),  # the openai SDK's form
        response_model=Video,
        deps=VideoDeps,
        tag="videos",
        errors=(400, 402, 404, 413, 429, 503),
        stores_files=True,
        scope="inference",
    ),
    Endpoint(
        "GET",
        "/v1/videos",
        list_videos,
        "The caller's video jobs, newest first.",
        response_model=VideoList,
        deps=VideoDeps,
        tag="videos",
        query=(
            QueryParam("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
            QueryParam("order", {"type": "string", "enum": ["asc", "desc"]}, "by creation time"),
            QueryParam("after", {"type": "string"}, "a video id: list the jobs after it"),
        ),
        scope="inference",
    ),
    Endpoint(
        "GET",
        _ID,
        retrieve_video,
        "One video job; once completed, answered with its receipt headers (X-VaaS-*, and the "
        "traceparent and run id of the call that created it).",
        response_model=Video,
        deps=VideoDeps,
        tag="videos",
        errors=(404,),
        scope="inference",
    ),
    Endpoint(
        "GET",
        f"{_ID}/content",
        retrieve_video_content,
        "The finished MP4 (H.264), with the receipt headers of the job that made it.",
        deps=VideoDeps,
        tag="videos",
        errors=(400, 404),
        content_type="video/mp4",
        scope="inference",
    ),
    Endpoint(
        "DELETE",
        _ID,
        delete_video,
        "Delete a job (not yet finished: cancelled and its reservation released).",
        response_model=VideoDeleted,
        deps=VideoDeps,
        tag="videos",
        errors=(404,),
        scope="inference",
    ),
]
