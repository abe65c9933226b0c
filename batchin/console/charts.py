"""Stacked bar charts as inline SVG, drawn on the server: a picture that needs no script, scales
with the page, and carries a text alternative (a <title> per bar and the table beside it)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

__all__ = ["Bar", "stacked_bars"]

# Colour-blind-safe (Okabe-Ito), each readable against white.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_WIDTH, _HEIGHT, _PAD = 640, 220, 28


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # the x-axis label (a day)
    parts: dict[str, float]  # series name -> value, stacked in the order of `series`


def stacked_bars(bars: list[Bar], series: list[str], title: str, fmt: str = "{:,.0f}") -> str:
    top = max((sum(b.parts.values()) for b in bars), default=0.0) or 1.0
    slot = (_WIDTH - 2 * _PAD) / max(len(bars), 1)
    width = max(slot * 0.7, 2.0)
    shapes: list[str] = []
    for index, bar in enumerate(bars):
        x = _PAD + index * slot + (slot - width) / 2
        y = float(_HEIGHT - _PAD)
        for number, name in enumerate(series):
            value = bar.parts.get(name, 0.0)
            if value <= 0:
                continue
            height = value / top * (_HEIGHT - 2 * _PAD)
            y -= height
            colour = _PALETTE[number % len(_PALETTE)]
            label = escape(f"{bar.label} · {name}: {fmt.format(value)}")
            shapes.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{label}</title></rect>"
            )
        if len(bars) <= 16 or index % max(len(bars) // 8, 1) == 0:
            shapes.append(
                f'<text x="{x + width / 2:.1f}" y="{_HEIGHT - 8}" font-size="10" text-anchor="middle">'
                f"{escape(bar.label[5:])}</text>"
            )
    axis = f'<text x="4" y="14" font-size="10">{escape(fmt.format(top))}</text>'
    baseline = (
        f'<line x1="{_PAD}" y1="{_HEIGHT - _PAD}" x2="{_WIDTH - _PAD}" y2="{_HEIGHT - _PAD}" stroke="#555"/>'
    )
    legend = "".join(
        f'<li><svg class="swatch" width="10" height="10" aria-hidden="true">'
        f'<rect width="10" height="10" fill="{_PALETTE[n % len(_PALETTE)]}"/></svg>{escape(name)}</li>'
        for n, name in enumerate(series)
    )
    return (
        f'<figure class="chart">'
        f'<svg viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>{axis}{baseline}{''.join(shapes)}</svg>"
        f'<figcaption>{escape(title)}<ul class="legend">{legend}</ul></figcaption></figure>'
    )
