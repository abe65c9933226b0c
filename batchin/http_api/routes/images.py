"""/v1/images and /v1/images/generations (the openai SDK's path): one handler."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json, render
from batchin.protocol.images import ImageGenerateRequest, ImagesResponse


async def create_image(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, ImageGenerateRequest)
    result = await request.app.state.services.images.generate(ctx, body)
    response = render(result)
    response.headers.update(ctx.response_headers())
    return response


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/images",
        create_image,
        "Text to image: `n` PNGs of exactly `size`, as stored-file URLs or inline base64; billed per image.",
        request_model=ImageGenerateRequest,
        response_model=ImagesResponse,
        tag="images",
        errors=(400, 402, 404, 413, 429, 503),
        extra_paths=("/v1/images/generations",),
    ),
]
