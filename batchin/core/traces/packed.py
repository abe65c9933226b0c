"""The spans of one of our own calls as one row of trace_call_spans, and back.

A call's spans (builder.py: five, sharing the trace id, the resource attributes and the source) are
one JSON document, `[resource attributes, [span, ...]]`, each span a list of its other fields in
`PACKED_FIELDS` order: one row and its two index entries instead of five rows and their ten, nine
bound parameters instead of ninety-five, for about the same `orjson.dumps` work (of the call rather
than of each span's attributes). The row's other columns are what reads filter and sort on without
unpacking. Unpacking gives back spans equal to those packed (orjson keeps every int, float
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
    anchor = next((span for span in spans if span.source == "batchin"), None)
    if anchor is None:
        return None, list(spans)
    trace_id, resource = anchor.trace_id, anchor.resource_attributes
    packed: dict[str, list[Any]] = {}
    rest: list[Span] = []
    # The row's range and status, kept as the spans go by: min() and max() over five values cost
    # a quarter of the packing.
    first_start = last_start = anchor.start_unix_nano
    last_end, status = anchor.end_unix_nano, anchor.status_code
    for span in spans:
        # Ours share one resource list (builder._resource): identity answers without comparing.
        same_resource = span.resource_attributes is resource or span.resource_attributes == resource
        if span.source != "batchin" or span.trace_id != trace_id or not same_resource:
            rest.append(span)
            continue
        start, end, code = span.start_unix_nano, span.end_unix_nano, span.status_code
        if start < first_start:
            first_start = start
        if start > last_start:
            last_start = start
        if end > last_end:
            last_end = end
        if code > status:
            status = code
        # A span id given twice is one span (the last one given), as a row per span keeps it.
        packed[span.span_id] = [
            span.span_id,
            span.parent_span_id,
            span.name,
            span.kind,
            start,
            end,
            code,
            span.status_message,
            span.attributes,
            span.events,
            span.links,
            span.trace_state,
            span.flags,
            span.scope_name[:200],
            span.scope_version[:200],
        ]
    values = list(packed.values())
    if len(values) + len(rest) < len(spans):  # a span replaced by a later one of its id
        first_start, last_start = min(v[4] for v in values), max(v[4] for v in values)
        last_end, status = max(v[5] for v in values), max(v[6] for v in values)
    row = (
        user_id,
        trace_id,
        anchor.span_id,
        first_start,
        last_end,
        last_start,
        status,
        len(values),
        orjson.dumps([resource, values]),
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
