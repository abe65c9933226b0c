"""/v1/files/{id} and its content: stored outputs, served to their owner only (others get 404)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from batchin.core.context import CallContext
from batchin.core.files import FileContent
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import render
from batchin.protocol.files import FileObject


def file_response(content: FileContent, ctx: CallContext) -> Response:
    response = FileResponse(
        content.path,
        media_type=content.content_type,
        filename=content.filename,
        content_disposition_type="inline",
        headers=ctx.response_headers(),
    )
    return response


async def retrieve_file(request: Request, ctx: CallContext) -> Response:
    stored = await request.app.state.services.files.get(ctx.principal.user_id, request.path_params["file_id"])
    return render(stored)


async def retrieve_file_content(request: Request, ctx: CallContext) -> Response:
    files = request.app.state.services.files
    content = await files.content(ctx.principal.user_id, request.path_params["file_id"])
    return file_response(content, ctx)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/v1/files/{file_id}",
        retrieve_file,
        "A stored file's metadata (OpenAI FileObject); only its owner sees it.",
        response_model=FileObject,
        tag="files",
        errors=(404,),
    ),
    Endpoint(
        "GET",
        "/v1/files/{file_id}/content",
        retrieve_file_content,
        "A stored file's bytes (generated images and videos); only its owner gets them.",
        tag="files",
        errors=(404,),
        content_type="application/octet-stream",
    ),
]
