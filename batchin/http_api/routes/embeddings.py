"""/v1/embeddings: parse, call core, render."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Self

import orjson
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.media.embeddings import EmbeddingsService
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json
from batchin.http_api.streaming import until_disconnect
from batchin.protocol.embeddings import CreateEmbeddingResponse, EmbeddingRequest
from batchin.services import Services


@dataclass(frozen=True, slots=True)
class EmbeddingDeps:
    """What /v1/embeddings uses."""

    embeddings: EmbeddingsService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(embeddings=services.embeddings, max_body_bytes=services.settings.max_body_bytes)


async def create_embedding(request: Request, ctx: CallContext, deps: EmbeddingDeps) -> Response:
    body = await parse_json(request, EmbeddingRequest, deps.max_body_bytes)
    result = await until_disconnect(request, deps.embeddings.create(ctx, body))
    # A thousand 384-float vectors serialise in tens of milliseconds: off the event loop.
    content = await asyncio.to_thread(lambda: orjson.dumps(result.model_dump(mode="json")))
    return Response(content, media_type="application/json", headers=ctx.response_headers())


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/embeddings",
        create_embedding,
        "Embed a string or an array of strings; `encoding_format` float or base64 (little-endian float32).",
        request_model=EmbeddingRequest,
        response_model=CreateEmbeddingResponse,
        deps=EmbeddingDeps,
        tag="inference",
        errors=(400, 402, 404, 413, 503),
        scope="inference",
    ),
]
