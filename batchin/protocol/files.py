"""Stored files (OpenAI's FileObject shape)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

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
    expires_at: int | None = None
    status_details: str | None = None
