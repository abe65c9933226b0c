"""The one place core errors become MCP tool errors: the same envelope (code, message, param) as
the HTTP API, plus the HTTP status and, for 429, the retry hint. Unexpected errors are not mapped
here: FastMCP masks them (`mask_error_details=True`), so internals never reach the client."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastmcp.exceptions import ToolError
from fastmcp.tools.base import ToolResult
from mcp.types import TextContent

from batchin.errors import BatchInError, InvalidRequest, RateLimited

__all__ = ["CoreToolError", "error_payload", "error_result"]


def error_payload(exc: BatchInError) -> dict[str, Any]:
    payload = exc.body()
    payload["error"]["status"] = exc.status
    if isinstance(exc, RateLimited):
        payload["error"]["retry_after"] = round(exc.retry_after, 3)
    return payload


class CoreToolError(ToolError):
    """A core refusal raised inside a tool; carries the envelope to the middleware. Logged at INFO:
    a 402 or 404 is an answer, not a server fault."""

    def __init__(self, exc: BatchInError) -> None:
        self.payload = error_payload(exc)
        super().__init__(orjson.dumps(self.payload).decode(), log_level=logging.INFO)


def error_result(payload: dict[str, Any]) -> ToolResult:
    """An `isError` tool result whose text is the HTTP error body, so a model reads the same code
    and message an SDK caller would, and whose structured content is that body."""
    text = orjson.dumps(payload).decode()
    return ToolResult(
        content=[TextContent(type="text", text=text)], structured_content=payload, is_error=True
    )


def argument_error(message: str) -> dict[str, Any]:
    """Arguments that failed the tool's schema: reported like a 400 on HTTP."""
    return error_payload(InvalidRequest(message))
