"""A span as one trace_spans row (spans sent over OTLP, and our calls' spans stored before
revision 0020), and back: attributes, events and links as OTLP JSON text."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson

from batchin.core.traces.otlp import Span

__all__ = ["SPAN_FIELDS", "span_from_row", "span_row"]

SPAN_FIELDS = tuple(f.name for f in fields(Span))
_JSON_FIELDS = ("attributes", "resource_attributes", "events", "links")


def span_row(user_id: str, span: Span) -> tuple[Any, ...]:
    """The user id, then the span's values in `fields(Span)` order (the INSERT's column order)."""
    return (
        user_id,
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.kind,
        span.start_unix_nano,
        span.end_unix_nano,
        span.status_code,
        span.status_message,
        _json_list(span.attributes),
        _shared_json_list(span.resource_attributes),
        _json_list(span.events),
        _json_list(span.links),
        span.trace_state,
        span.flags,
        span.scope_name[:200],
        span.scope_version[:200],
        span.source,
    )


def _json_list(values: list[Any]) -> str:
    return orjson.dumps(values).decode() if values else "[]"


# The resource attributes of our own spans are one list per (environment, region), shared by every
# span (builder._resource): its JSON is made once (for a call's spans that are not packed). Keyed
# by identity, the list held alongside so its id cannot be reused while cached; lists sent over
# OTLP just pass through a bounded cache.
_SHARED_JSON: dict[int, tuple[list[Any], str]] = {}


def _shared_json_list(values: list[Any]) -> str:
    known = _SHARED_JSON.get(id(values))
    if known is not None and known[0] is values:
        return known[1]
    text = _json_list(values)
    if len(_SHARED_JSON) >= 64:
        _SHARED_JSON.clear()
    _SHARED_JSON[id(values)] = (values, text)
    return text


def span_from_row(r: Any) -> Span:
    values = {name: getattr(r, name) for name in SPAN_FIELDS}
    for name in _JSON_FIELDS:
        values[name] = orjson.loads(values[name])
    return Span(**values)
