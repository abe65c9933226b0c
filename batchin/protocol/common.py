"""Shapes shared by every resource."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from batchin.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


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


def validate(model: type[M], data: Any) -> M:
    """Validate input for any surface (HTTP body, MCP tool arguments): the first problem becomes
    one InvalidRequest naming the field, so both surfaces report it identically."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        message = first["msg"]
        raise InvalidRequest(
            f"Invalid value for '{param}': {message}." if param else message, param=param
        ) from None
