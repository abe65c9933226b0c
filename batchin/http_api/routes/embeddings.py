"""/v1/embeddings: parse, call core, render."""

from __future__ import annotations

import asyncio

import orjson
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json
from batchin.protocol.embeddings import CreateEmbeddingResponse, EmbeddingRequest


async def create_embedding(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, EmbeddingRequest)
    result = await request.app.state.services.embeddings.create(ctx, body)
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
        tag="inference",
        errors=(400, 402, 404, 413, 503),
    ),
]
