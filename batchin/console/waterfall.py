"""A trace's spans as a waterfall: one row per span, its bar placed by when it started and how long
it ran, relative to the whole trace. The rows feed an inline SVG per span in the template (bars by
x/width in a 0-1000 viewBox: no script, and no inline style, which the console's CSP forbids)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from batchin.protocol.traces import SpanOut

__all__ = ["SCALE", "Tick", "WaterfallRow", "ticks", "waterfall"]

SCALE = 1000  # the bars' viewBox width
_MIN_WIDTH = 2  # a span too short to see still shows as a sliver
_MAX_DEPTH = 6  # deeper spans indent no further (CSS classes depth-0 … depth-6)


@dataclass(frozen=True, slots=True)
class WaterfallRow:
    span: SpanOut
    depth: int
    offset_ms: float  # from the trace's first start
    x: float
    width: float
    attributes: list[tuple[str, Any]]


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


def waterfall(spans: list[SpanOut]) -> tuple[list[WaterfallRow], float]:
    """The rows, in the given order (the trace view's: oldest first, parents before children), and
    the trace's total duration in milliseconds."""
    if not spans:
        return [], 0.0
    start = min(int(s.start_time_unix_nano) for s in spans)
    end = max(int(s.end_time_unix_nano) for s in spans)
    total = max(end - start, 1)
    parents = {s.span_id: s.parent_span_id for s in spans}
    rows = []
    for span in spans:
        begin = int(span.start_time_unix_nano) - start
        length = max(int(span.end_time_unix_nano) - int(span.start_time_unix_nano), 0)
        x = begin / total * SCALE
        width = min(max(length / total * SCALE, _MIN_WIDTH), SCALE - x) if x < SCALE else _MIN_WIDTH
        rows.append(
            WaterfallRow(
                span=span,
                depth=min(_depth(span, parents), _MAX_DEPTH),
                offset_ms=begin / 1e6,
                x=min(x, SCALE - _MIN_WIDTH),
                width=width,
                attributes=sorted(span.attributes.items()),
            )
        )
    return rows, (end - start) / 1e6


def ticks(total_ms: float, count: int = 4) -> list[Tick]:
    """Evenly spaced time marks for the axis above the bars."""
    return [Tick(SCALE * n / count, f"{total_ms * n / count:,.1f} ms") for n in range(count + 1)]


def _depth(span: SpanOut, parents: dict[str, str | None]) -> int:
    level, parent, seen = 0, span.parent_span_id, {span.span_id}
    while parent is not None and parent in parents and parent not in seen:
        seen.add(parent)
        level, parent = level + 1, parents[parent]
    return level
