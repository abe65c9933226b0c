"""Reading an upstream's refusal: its error message and param (OpenAI's envelope, TGI's and
FastAPI's shapes) and its Retry-After (seconds or an HTTP date)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson

__all__ = ["error_details", "retry_after"]

_ERROR_BODY_LIMIT = 500  # characters of a non-JSON upstream error body worth quoting


def error_details(body: bytes) -> tuple[str, str | None]:
    """The upstream's error message and param, from OpenAI's envelope or the shapes TGI
    (`{"error": "..."}`) and FastAPI (`{"detail": ...}`) use."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", errors="replace").strip()[:_ERROR_BODY_LIMIT], None
    if not isinstance(data, dict):
        return "", None
    error = data.get("error")
    if isinstance(error, dict):
        param = error.get("param")
        return str(error.get("message") or ""), param if isinstance(param, str) else None
    for value in (error, data.get("message"), data.get("detail")):
        if value:
            return str(value), None
    return "", None


def retry_after(headers: Mapping[str, str]) -> float:
    """Retry-After in seconds (delta-seconds or an HTTP date); 1 s when absent or unreadable."""
    value = headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else 1.0
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
