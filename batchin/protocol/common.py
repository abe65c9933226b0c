"""Shapes shared by every resource."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are ignored (OpenAI clients send extras), types are strict."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class ErrorDetail(BaseModel):
    message: str
    type: str
    code: str
    param: str | None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class HealthResponse(BaseModel):
    status: str
