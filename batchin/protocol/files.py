"""Stored files (OpenAI's FileObject shape)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from batchin.protocol.common import omitted_if_none

# Purposes of files BatchIn writes itself; uploads (e.g. "batch") share the table.
IMAGE_OUTPUT = "image_output"
VIDEO_OUTPUT = "video_output"


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    # Absent rather than null: OpenAI's schema types both as non-null (and stored files do not expire).
    expires_at: int | None = omitted_if_none()
    status_details: str | None = omitted_if_none()
