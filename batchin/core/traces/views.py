"""What the console shows of traces beyond the public API's shapes: a trace's totals for the list
(spans, duration, whether a span failed), and each call's outcome by its audit record (the root
span's endpoint, status and cost), so a receipt can say what it cost and where its trace is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchin.core.traces.otlp import Span, plain_attributes
from batchin.protocol.traces import TraceItem

__all__ = ["CALL_SPAN", "CallOutcome", "TraceOverview", "call_outcome"]

CALL_SPAN = "batchin.call"  # the root span of each of our calls (builder.py)


@dataclass(frozen=True, slots=True)
class TraceOverview:
    item: TraceItem
    spans: int
    duration_ms: float
    failed: bool


@dataclass(frozen=True, slots=True)
class CallOutcome:
    trace_id: str
    record_id: str
    endpoint: str | None
    status: str | None  # succeeded | cancelled | the failure's name
    cost_micro_cents: int | None  # in the account's currency (micro cents or micro fen)


def call_outcome(span: Span) -> CallOutcome | None:
    """The outcome a call's root span states; None for a span that names no audit record."""
    attributes: dict[str, Any] = plain_attributes(span.attributes)
    record_id = attributes.get("batchin.record_id")
    if not isinstance(record_id, str) or not record_id:
        return None
    cost = attributes.get("batchin.cost_micro_cents")
    endpoint, status = attributes.get("batchin.endpoint"), attributes.get("batchin.status")
    return CallOutcome(
        trace_id=span.trace_id,
        record_id=record_id,
        endpoint=endpoint if isinstance(endpoint, str) else None,
        status=status if isinstance(status, str) else None,
        # OTLP JSON carries int64 values as strings; ours are ints once decoded.
        cost_micro_cents=int(cost)
        if isinstance(cost, int) or (isinstance(cost, str) and cost.isdigit())
        else None,
    )
