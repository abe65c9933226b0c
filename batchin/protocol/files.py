"""Stored files (OpenAI's FileObject shape)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from batchin.protocol.common import RequestModel, omitted_if_none

# Purposes of files BatchIn writes itself; uploads (e.g. "batch") share the table.
IMAGE_OUTPUT = "image_output"
VIDEO_OUTPUT = "video_output"


class FileUploadForm(RequestModel):
    """The text field of an upload (POST /v1/files, multipart); the bytes come in the `file` part."""

    purpose: Literal["batch"] = Field(description="what the file is for: a JSONL batch input")


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    # Absent rather than null: OpenAI's schema types both as non-null. expires_at: when the
    # retention purge may remove the file (absent when its kind is kept for ever).
    expires_at: int | None = omitted_if_none()
    status_details: str | None = omitted_if_none()


class FileDeleted(BaseModel):
    """DELETE /v1/files/{id} (OpenAI's FileDeleted)."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool = True
