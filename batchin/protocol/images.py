"""Image generation (`/v1/images`, `/v1/images/generations`): OpenAI's request and response shapes."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from batchin.protocol.common import RequestModel, omitted_if_none

DEFAULT_IMAGE_SIZE = "1024x1024"
MIN_SIDE = 16
MAX_SIDE = 2048
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


def parse_size(size: str) -> tuple[int, int]:
    """ "WIDTHxHEIGHT" → (width, height), each side within [MIN_SIDE, MAX_SIDE]; ValueError otherwise."""
    match = _SIZE.match(size)
    if match is None:
        raise ValueError(f"size must look like '1024x1024' (WIDTHxHEIGHT), got {size!r}")
    width, height = int(match.group(1)), int(match.group(2))
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"each side of size must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {size!r}")
    return width, height


class ImageGenerateRequest(RequestModel):
    model: str | None = Field(default=None, min_length=1, description="default: the first image model")
    prompt: str = Field(min_length=1, max_length=32_000)
    size: str = Field(default=DEFAULT_IMAGE_SIZE, description="WIDTHxHEIGHT, or 'auto'")
    n: int = Field(default=1, ge=1, le=4)
    response_format: Literal["url", "b64_json"] = "url"
    output_format: Literal["png"] = "png"
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    user: str | None = None

    @field_validator("size")
    @classmethod
    def _valid_size(cls, size: str) -> str:
        if size == "auto":
            return DEFAULT_IMAGE_SIZE
        parse_size(size)
        return size

    @property
    def dimensions(self) -> tuple[int, int]:
        return parse_size(self.size)


class ImageData(BaseModel):
    """`url` or `b64_json`, whichever was asked for; the other is absent (never null)."""

    url: str | None = omitted_if_none()
    b64_json: str | None = omitted_if_none()
    revised_prompt: str | None = omitted_if_none()


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    output_format: Literal["png"] = "png"
    # Any WIDTHxHEIGHT we rendered, though OpenAI's schema enumerates only its three sizes: see
    # tests/http_api/test_openai_schema_images.py.
    size: str
