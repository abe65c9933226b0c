"""Request parsing and response rendering: the one place bodies become models and back."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from batchin.errors import InvalidRequest
from batchin.http_api.body_limit import read_limited
from batchin.protocol.common import validate

M = TypeVar("M", bound=BaseModel)

__all__ = ["JSONResponse", "parse_json", "query_int", "read_body", "render", "validate"]


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def render(
    payload: BaseModel | list[Any] | dict[str, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """`headers` go in with the response's own (built once: cheaper than setting them after)."""
    if isinstance(payload, BaseModel):
        content: Any = payload.model_dump(mode="json")
    elif isinstance(payload, list):
        content = [p.model_dump(mode="json") if isinstance(p, BaseModel) else p for p in payload]
    else:
        content = payload
    return JSONResponse(content, status_code=status_code, headers=headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `max_bytes` (declared or streamed)."""
    return await read_limited(request, max_bytes)


async def parse_json(request: Request, model: type[M], max_bytes: int) -> M:
    """The body as `model`; `max_bytes` is the route's body limit (Settings.max_body_bytes)."""
    body = await read_body(request, max_bytes)
    if not body.strip():
        data: Any = {}
    else:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidRequest("Request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InvalidRequest("Request body must be a JSON object.")
    return validate(model, data)


def query_int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"Query parameter '{name}' must be an integer.", param=name) from None
    # Beyond 64 bits no database column can take it (SQLite raised OverflowError: a 500).
    if not -(2**63) <= value < 2**63:
        raise InvalidRequest(f"Query parameter '{name}' is out of range.", param=name)
    return value
