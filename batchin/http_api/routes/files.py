"""/v1/files: uploads (multipart, purpose `batch`, streamed to disk, within the user's storage
quota), and any stored file's metadata and content, served to and deleted by their owner only
(others get 404)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from batchin.core.context import CallContext
from batchin.core.media.files import FileContent, FileService
from batchin.errors import InvalidRequest
from batchin.http_api.body_limit import limit_body
from batchin.http_api.endpoint import Endpoint, FormBody
from batchin.http_api.rendering import render
from batchin.protocol.batches import BATCH_INPUT
from batchin.protocol.files import FileDeleted, FileObject, FileUploadForm
from batchin.services import Services

_UPLOAD_PURPOSES = (BATCH_INPUT,)


def file_response(content: FileContent, ctx: CallContext) -> Response:
    response = FileResponse(
        content.path,
        media_type=content.content_type,
        filename=content.filename,
        content_disposition_type="inline",
        headers=ctx.response_headers(),
    )
    return response


@dataclass(frozen=True, slots=True)
class FileDeps:
    """What /v1/files* use."""

    files: FileService
    upload_max_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(files=services.files, upload_max_bytes=services.settings.file_upload_max_bytes)


async def upload_file(request: Request, ctx: CallContext, deps: FileDeps) -> Response:
    """OpenAI's upload: multipart `file` and `purpose`. Starlette spools the part to a temporary
    file as it arrives; it is then copied into the store a block at a time."""
    limit = deps.upload_max_bytes
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Upload a file as multipart/form-data with fields 'file' and 'purpose'.")
    async with limit_body(request, limit, subject="The upload").form(max_files=1, max_fields=8) as form:
        purpose, upload = form.get("purpose"), form.get("file")
        if purpose not in _UPLOAD_PURPOSES:
            raise InvalidRequest(f"purpose must be one of {list(_UPLOAD_PURPOSES)}.", param="purpose")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("The multipart field 'file' must be a file.", param="file")
        stored = await deps.files.store_stream(
            ctx.principal.user_id,
            upload.file,
            filename=upload.filename or "upload.jsonl",
            purpose=purpose,
            content_type=upload.content_type or "application/jsonl",
            max_bytes=limit,
        )
    return render(stored)


async def retrieve_file(request: Request, ctx: CallContext, deps: FileDeps) -> Response:
    stored = await deps.files.get(ctx.principal.user_id, request.path_params["file_id"])
    return render(stored)


async def delete_file(request: Request, ctx: CallContext, deps: FileDeps) -> Response:
    return render(await deps.files.delete_owned(ctx.principal.user_id, request.path_params["file_id"]))


async def retrieve_file_content(request: Request, ctx: CallContext, deps: FileDeps) -> Response:
    content = await deps.files.content(ctx.principal.user_id, request.path_params["file_id"])
    return file_response(content, ctx)


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/files",
        upload_file,
        "Upload a file (multipart: `file`, `purpose` = batch): a JSONL batch input for POST /v1/batches.",
        form=FormBody(FileUploadForm),
        response_model=FileObject,
        deps=FileDeps,
        tag="files",
        errors=(400, 413),
        stores_files=True,
        scope="batches",
    ),
    Endpoint(
        "GET",
        "/v1/files/{file_id}",
        retrieve_file,
        "A stored file's metadata (OpenAI FileObject); only its owner sees it.",
        response_model=FileObject,
        deps=FileDeps,
        tag="files",
        errors=(404,),
        scope="batches",
    ),
    Endpoint(
        "DELETE",
        "/v1/files/{file_id}",
        delete_file,
        "Delete a stored file (bytes and metadata); its bytes no longer count against the storage quota.",
        response_model=FileDeleted,
        deps=FileDeps,
        tag="files",
        errors=(404,),
        scope="batches",
    ),
    Endpoint(
        "GET",
        "/v1/files/{file_id}/content",
        retrieve_file_content,
        "A stored file's bytes, in the file's own media type: a batch input or output "
        "(application/jsonl, or the type it was uploaded with), a generated image (image/png) or "
        "video (video/mp4); only its owner gets them.",
        deps=FileDeps,
        tag="files",
        errors=(404,),
        content_type="*/*",  # each file keeps the type it was stored with (uploads: the client's)
        scope="batches",
    ),
]
