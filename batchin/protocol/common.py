"""Shapes shared by every resource."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from batchin.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)


class RequestModel(BaseModel):
    """Base of request bodies: unknown fields are ignored (OpenAI clients send extras), types are strict."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


def _is_none(value: object) -> bool:
    return value is None


def _without_null(schema: dict[str, Any]) -> None:
    """The field is left out rather than sent as null, so its schema names only the value's type."""
    branches = [branch for branch in schema.pop("anyOf", []) if branch != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches
    schema.pop("default", None)


def omitted_if_none(description: str | None = None) -> Any:
    """A response field that is absent from the JSON while it has no value, as OpenAI sends it and
    as its published schema types it (a string or an integer, never null). `exclude_if` runs in
    pydantic-core's serializer, so model_dump_json stays as fast as with a plain field."""
    return Field(default=None, exclude_if=_is_none, json_schema_extra=_without_null, description=description)


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
