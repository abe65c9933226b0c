"""The spans of one of our own calls as one row of trace_call_spans, and back.

A call's spans (builder.py: five, sharing the trace id, the resource attributes and the source) are
one JSON document, `[resource attributes, [span, ...]]`, each span a list of its other fields in
`PACKED_FIELDS` order: one row with its two index entries instead of five rows with fifteen, one
`orjson.dumps` instead of four per span. The row's other columns are what reads filter and sort on
without unpacking. Unpacking gives back spans equal to those packed (orjson keeps every int, float
and string exactly), with the scope name and version cut to 200 characters as trace_spans cuts them.

The packing is revision 0020's (its downgrade unpacks with its own copy of `PACKED_FIELDS`): a
change of form is a new migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from batchin.core.traces.otlp import Span

__all__ = ["PACKED_COLUMNS", "PACKED_FIELDS", "pack_call", "unpack"]

PACKED_FIELDS = (
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "start_unix_nano",
    "end_unix_nano",
    "status_code",
    "status_message",
    "attributes",
    "events",
    "links",
    "trace_state",
    "flags",
    "scope_name",
    "scope_version",
)
# The INSERT's columns, in the order of the row `pack_call` makes.
PACKED_COLUMNS = (
    "user_id",
    "trace_id",
    "span_id",
    "start_unix_nano",
    "end_unix_nano",
    "last_start_unix_nano",
    "status_code",
    "span_count",
    "spans",
)


def pack_call(user_id: str, spans: Sequence[Span]) -> tuple[tuple[Any, ...] | None, list[Span]]:
    """The row of the call's spans that pack (ours, of the first one's trace and resource), keyed
    by the first of them (the call's root span), and the spans that do not (stored one per row)."""
    packed: dict[str, list[Any]] = {}
    rest: list[Span] = []
    anchor: Span | None = None
    for span in spans:
        if anchor is None and span.source == "batchin":
            anchor = span
        if anchor is None or not _fits(span, anchor):
            rest.append(span)
            continue
        # A span id given twice is one span (the last one given), as a row per span keeps it.
        packed[span.span_id] = [
            span.span_id,
            span.parent_span_id,
            span.name,
            span.kind,
            span.start_unix_nano,
            span.end_unix_nano,
            span.status_code,
            span.status_message,
            span.attributes,
            span.events,
            span.links,
            span.trace_state,
            span.flags,
            span.scope_name[:200],
            span.scope_version[:200],
        ]
    if anchor is None:
        return None, rest
    values = list(packed.values())
    starts = [v[4] for v in values]
    row = (
        user_id,
        anchor.trace_id,
        anchor.span_id,
        min(starts),
        max(v[5] for v in values),
        max(starts),
        max(v[6] for v in values),
        len(values),
        orjson.dumps([anchor.resource_attributes, values]),
    )
    return row, rest


def unpack(trace_id: str, packed: bytes) -> list[Span]:
    """The spans of one packed call, in the order they were packed."""
    resource, values = orjson.loads(packed)
    spans = []
    for span_id, parent, name, kind, start, end, code, message, attributes, *rest in values:
        events, links, trace_state, flags, scope_name, scope_version = rest
        spans.append(
            Span(
                trace_id,
                span_id,
                parent,
                name,
                kind,
                start,
                end,
                code,
                message,
                attributes,
                resource,
                events,
                links,
                trace_state,
                flags,
                scope_name,
                scope_version,
                "batchin",
            )
        )
    return spans


def _fits(span: Span, anchor: Span) -> bool:
    return (
        span.source == "batchin"
        and span.trace_id == anchor.trace_id
        # Ours share one list (builder._resource): identity answers without comparing.
        and (
            span.resource_attributes is anchor.resource_attributes
            or span.resource_attributes == anchor.resource_attributes
        )
    )
