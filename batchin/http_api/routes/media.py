"""/v1/media/{media_id}: a generated image or video by its signed link (core/media/links.py), no
key needed, so it works in an `<img>` or `<video>` tag. Range requests are answered (seeking in a
video); a browser may cache the bytes until the link expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Self

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from batchin.core.media.linked import LinkedMedia
from batchin.http_api.endpoint import Endpoint, QueryParam
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class MediaLinkDeps:
    """What /v1/media uses."""

    media: LinkedMedia

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(media=services.media)


async def open_media_link(request: Request, deps: MediaLinkDeps) -> Response:
    query = request.query_params
    opened = await deps.media.open(
        request.path_params["media_id"], query.get("expires"), query.get("signature")
    )
    content = opened.content
    max_age = max(0, opened.expires - int(time.time()))
    return FileResponse(
        content.path,
        media_type=content.content_type,
        filename=content.filename,
        content_disposition_type="inline",
        headers={
            # private: the link is a credential for this file; a shared cache must not keep it.
            "Cache-Control": f"private, max-age={max_age}",
            "X-Content-Type-Options": "nosniff",
        },
    )


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/media/{media_id}",
        open_media_link,
        "A generated image or video by its signed link (images' data[].url, a video's output_url): "
        "no key needed until `expires`; 403 when expired or altered, 404 until a video is completed.",
        deps=MediaLinkDeps,
        public=True,
        tag="files",
        errors=(403, 404),
        content_type="application/octet-stream",
        query=(
            QueryParam("expires", {"type": "integer"}, "unix seconds the link is valid until"),
            QueryParam("signature", {"type": "string"}, "HMAC-SHA256 of the media id and expires"),
        ),
    ),
]
