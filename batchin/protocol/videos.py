"""Video generation jobs (`/v1/videos`): OpenAI's Video object plus the seed's fields.

Two request forms reach one model: the seed's JSON (`model`, `prompt`, `duration_seconds`,
`aspect_ratio`) and the openai SDK's multipart form (`prompt`, `model`, `seconds` as a string,
`size`). Both become a `VideoCreateRequest`; `job_seconds()` and `job_size()` settle what to make.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from batchin.errors import InvalidRequest
from batchin.protocol.common import RequestModel
from batchin.protocol.images import parse_size

DEFAULT_VIDEO_SECONDS = 4
MAX_VIDEO_SECONDS = 20
DEFAULT_VIDEO_SIZE = "1280x720"
# The seed's aspect ratios, as the sizes OpenAI's video models produce.
ASPECT_SIZES = {"16:9": "1280x720", "9:16": "720x1280", "1:1": "720x720", "4:3": "960x720", "3:4": "720x960"}

VideoStatus = Literal["queued", "in_progress", "completed", "failed"]


class VideoCreateRequest(RequestModel):
    model: str | None = Field(default=None, min_length=1, description="default: the first video model")
    prompt: str = Field(min_length=1, max_length=32_000)
    seconds: str | int | None = Field(default=None, description="OpenAI's name: length in seconds")
    duration_seconds: float | None = Field(default=None, description="the seed's name for `seconds`")
    size: str | None = Field(default=None, description="WIDTHxHEIGHT")
    aspect_ratio: str | None = Field(default=None, description=f"one of {sorted(ASPECT_SIZES)}")
    seed: int | None = Field(default=None, ge=0, lt=2**63)

    @field_validator("size")
    @classmethod
    def _valid_size(cls, size: str | None) -> str | None:
        if size is not None:
            parse_size(size)
        return size

    @field_validator("aspect_ratio")
    @classmethod
    def _known_ratio(cls, ratio: str | None) -> str | None:
        if ratio is not None and ratio not in ASPECT_SIZES:
            raise ValueError(f"aspect_ratio must be one of {sorted(ASPECT_SIZES)}")
        return ratio

    def job_seconds(self) -> int:
        raw: object = self.seconds if self.seconds is not None else self.duration_seconds
        param = "seconds" if self.seconds is not None else "duration_seconds"
        if raw is None:
            return DEFAULT_VIDEO_SECONDS
        try:
            value = float(str(raw).strip())
        except ValueError:
            raise InvalidRequest(f"'{param}' must be a whole number of seconds.", param=param) from None
        if not value.is_integer() or not 1 <= value <= MAX_VIDEO_SECONDS:
            raise InvalidRequest(
                f"'{param}' must be a whole number of seconds from 1 to {MAX_VIDEO_SECONDS}.", param=param
            )
        return int(value)

    def job_size(self) -> str:
        if self.size is not None:
            return self.size
        if self.aspect_ratio is not None:
            return ASPECT_SIZES[self.aspect_ratio]
        return DEFAULT_VIDEO_SIZE


class VideoError(BaseModel):
    code: str
    message: str


class Video(BaseModel):
    id: str
    object: Literal["video.generation"] = "video.generation"  # the seed's name (OpenAI's is "video")
    status: VideoStatus
    progress: int = Field(ge=0, le=100)
    model: str
    prompt: str
    seconds: str
    size: str
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    error: VideoError | None = None
    remixed_from_video_id: str | None = None
    # The seed's fields.
    duration_seconds: int
    output_url: str | None = Field(
        default=None,
        description="a signed link to the MP4, valid without a key until its `expires`; present from "
        "`queued` (it answers 404 until the job is completed), null once failed",
    )
    file_id: str | None = None
    record_id: str | None = Field(
        default=None,
        description="the audit record signed over the prompt and the MP4 once the job is completed "
        "(X-VaaS-Record-Id; verify at /v1/vaas/{id}/verify); null until then",
    )


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Video]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True
