"""W3C trace context: continue the caller's `traceparent` or start a trace; every call gets a span
of its own and a run id (`X-BatchIn-Run-Id`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchin.core.random_ids import time_ordered_hex, token_hex

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str  # this call's span
    parent_span_id: str | None  # the caller's span, when it sent one
    sampled: bool = True

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


def new_span_id() -> str:
    return token_hex(8)


def new_run_id() -> str:
    return "run_" + token_hex(12)


def continue_trace(header: str | None) -> TraceContext:
    """Parse an incoming traceparent (invalid or absent → a new trace), per W3C Trace Context §3.2."""
    if header:
        match = _TRACEPARENT.match(header.strip().lower())
        if match:
            version, trace_id, parent, flags = match.groups()
            if version != "ff" and trace_id != _ZERO_TRACE and parent != _ZERO_SPAN:
                return TraceContext(trace_id, new_span_id(), parent, sampled=bool(int(flags, 16) & 1))
    # Time-ordered (random_ids.time_ordered_hex): every call's trace summary and spans are keyed by it.
    return TraceContext(time_ordered_hex(16), new_span_id(), None)


def restore_trace(traceparent: str | None, parent_span_id: str | None) -> TraceContext:
    """The trace context a call had, from the `traceparent` it answered with (its own span) and its
    caller's span: for work that ends after the call (a video job), whose spans join its trace.
    Nothing stored (a row older than the columns) → a new trace."""
    match = _TRACEPARENT.match(traceparent or "")
    if match is None:
        return continue_trace(None)
    _, trace_id, span_id, flags = match.groups()
    return TraceContext(trace_id, span_id, parent_span_id, sampled=bool(int(flags, 16) & 1))
