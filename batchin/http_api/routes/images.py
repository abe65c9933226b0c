"""/v1/images and /v1/images/generations (the openai SDK's path): one handler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.media.images import ImageService
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.origin import PublicOrigin
from batchin.http_api.rendering import parse_json, render
from batchin.http_api.streaming import until_disconnect
from batchin.protocol.images import ImageGenerateRequest, ImagesResponse
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class ImageDeps:
    """What /v1/images uses."""

    images: ImageService
    max_body_bytes: int
    origin: PublicOrigin  # the base of data[].url links

    @classmethod
    def from_services(cls, services: Services) -> Self:
        settings = services.settings
        return cls(
            images=services.images,
            max_body_bytes=settings.max_body_bytes,
            origin=PublicOrigin.from_settings(settings),
        )


async def create_image(request: Request, ctx: CallContext, deps: ImageDeps) -> Response:
    body = await parse_json(request, ImageGenerateRequest, deps.max_body_bytes)
    result = await until_disconnect(request, deps.images.generate(ctx, body, base=deps.origin.of(request)))
    response = render(result)
    response.headers.update(ctx.response_headers())
    return response


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/images",
        create_image,
        "Text to image: `n` PNGs of exactly `size`, as signed links that open without a key until they "
        "expire (GET /v1/media/{id}), or inline base64; billed per image.",
        request_model=ImageGenerateRequest,
        response_model=ImagesResponse,
        deps=ImageDeps,
        tag="images",
        errors=(400, 402, 404, 413, 429, 503),
        stores_files=True,
        extra_paths=("/v1/images/generations",),
        scope="inference",
    ),
]
