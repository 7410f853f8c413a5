"""Charts as inline SVG, drawn in Python: no script, no font or stylesheet from elsewhere, so that the HTML report
opens offline and shows the same everywhere.

Every chart is an ``<svg id="chart-...">`` whose ``<title>`` names it (screen readers read it; the report's test
looks for it), and every bar or point has its own ``<title>`` with the figure, shown as a tooltip. All text from
data is escaped here (:func:`html.escape`): flow names and traffic sources are the shop's, not ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Final

__all__ = ["bar_chart", "forest_plot", "time_chart"]

_W: Final = 720
_FONT: Final = 'font-family="system-ui, sans-serif" font-size="12"'
#: Colours: bars, the flagged bar, the second series, axes.
BAR: Final = "#2f6fb3"
FLAG: Final = "#c0392b"
SECOND: Final = "#27ae60"
AXIS: Final = "#888888"


def _open(chart_id: str, title: str, height: int, description: str) -> list[str]:
    return [
        f'<svg id="{escape(chart_id)}" viewBox="0 0 {_W} {height}" '
        f'width="{_W}" height="{height}" role="img" aria-labelledby="{escape(chart_id)}-title" {_FONT}>',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f"<desc>{escape(description)}</desc>",
    ]


def _empty(chart_id: str, title: str, message: str) -> str:
    parts = _open(chart_id, title, 60, message)
    parts.append(f'<text x="10" y="35" fill="{AXIS}">{escape(message)}</text></svg>')
    return "".join(parts)


def bar_chart(
    chart_id: str, title: str, rows: Sequence[tuple[str, int, str, bool]], *, empty: str = "no data"
) -> str:
    """Horizontal bars, one per ``(label, value, caption, flagged)``, scaled to the largest value; a flagged bar
    is drawn in red (a bottleneck)."""
    if not rows:
        return _empty(chart_id, title, empty)
    top = max(value for _, value, _, _ in rows) or 1
    height = 30 * len(rows) + 20
    parts = _open(chart_id, title, height, "; ".join(f"{label}: {value}" for label, value, _, _ in rows))
    left, span = 170, _W - 170 - 190
    for i, (label, value, caption, flagged) in enumerate(rows):
        y = 10 + 30 * i
        width = max(1.0, span * value / top) if value else 0.0
        colour = FLAG if flagged else BAR
        parts.append(
            f'<g class="bar" data-label="{escape(label)}"><title>{escape(f"{label}: {value:,} {caption}".strip())}'
            f'</title><text x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{left}" y="{y}" width="{width:.1f}" height="22" fill="{colour}"/>'
            f'<text x="{left + width + 6:.1f}" y="{y + 15}">{escape(f"{value:,} {caption}".strip())}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def time_chart(
    chart_id: str,
    title: str,
    days: Sequence[tuple[str, int, int]],
    *,
    empty: str = "no data",
    labels: tuple[str, str] = ("messages sent", "carts recovered"),
) -> str:
    """Per day, ``(day, first, second)``: the first series as bars (messages sent), the second as bars in front
    (carts recovered), on a shared scale, with the first and last day labelled; ``labels`` name the two series in
    the legend and the tooltips."""
    if not days:
        return _empty(chart_id, title, empty)
    height, base, left = 220, 180, 50
    top = max(max(a, b) for _, a, b in days) or 1
    step = (_W - left - 20) / len(days)
    bar = max(1.0, step * 0.8)
    parts = _open(chart_id, title, height, f"{len(days)} days from {days[0][0]} to {days[-1][0]}")
    parts.append(f'<line x1="{left}" y1="{base}" x2="{_W - 10}" y2="{base}" stroke="{AXIS}"/>')
    parts.append(f'<text x="{left - 6}" y="{base - 160 + 4}" text-anchor="end">{top:,}</text>')
    parts.append(f'<text x="{left - 6}" y="{base + 4}" text-anchor="end">0</text>')
    for i, (day, first, second) in enumerate(days):
        x = left + step * i + (step - bar) / 2
        h1, h2 = 160 * first / top, 160 * second / top
        parts.append(
            f'<g class="day" data-day="{escape(day)}"><title>{escape(day)}: {first:,} {escape(labels[0])}, '
            f'{second:,} {escape(labels[1])}</title>'
            f'<rect class="sent" x="{x:.1f}" y="{base - h1:.1f}" width="{bar:.1f}" height="{h1:.1f}" '
            f'fill="{BAR}" fill-opacity="0.45"/><rect class="recovered" x="{x + bar * 0.2:.1f}" y="{base - h2:.1f}" '
            f'width="{bar * 0.6:.1f}" height="{h2:.1f}" fill="{SECOND}"/></g>'
        )
    parts.append(f'<text x="{left}" y="{base + 18}">{escape(days[0][0])}</text>')
    if len(days) > 1:
        parts.append(f'<text x="{_W - 10}" y="{base + 18}" text-anchor="end">{escape(days[-1][0])}</text>')
    parts.append(
        f'<rect x="{_W - 250}" y="8" width="10" height="10" fill="{BAR}" fill-opacity="0.45"/>'
        f'<text x="{_W - 236}" y="17">{escape(labels[0])}</text>'
        f'<rect x="{_W - 130}" y="8" width="10" height="10" fill="{SECOND}"/>'
        f'<text x="{_W - 116}" y="17">{escape(labels[1])}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def forest_plot(
    chart_id: str, title: str, rows: Sequence[tuple[str, float, float, float, bool]], *, empty: str = "no data"
) -> str:
    """One line per ``(label, estimate, low, high, conclusive)`` on a shared axis in percentage points, with the
    zero line: an interval crossing it cannot tell an effect from none. Inconclusive rows are drawn grey."""
    if not rows:
        return _empty(chart_id, title, empty)
    reach = max(0.01, *(max(abs(low), abs(high)) for _, _, low, high, _ in rows))
    reach = math.ceil(reach * 100) / 100  # whole percentage points at the ends of the axis
    left, right = 200, _W - 30
    height = 40 * len(rows) + 50

    def x_of(value: float) -> float:
        return left + (value + reach) / (2 * reach) * (right - left)

    parts = _open(chart_id, title, height, "; ".join(f"{r[0]}: {r[1] * 100:+.1f} pp" for r in rows))
    bottom = 40 * len(rows) + 15
    parts.append(f'<line class="zero" x1="{x_of(0):.1f}" y1="5" x2="{x_of(0):.1f}" y2="{bottom}" stroke="{AXIS}" '
                 'stroke-dasharray="4 3"/>')  # fmt: skip
    for value in (-reach, 0.0, reach):
        parts.append(f'<text x="{x_of(value):.1f}" y="{bottom + 16}" text-anchor="middle">{value * 100:+.0f} pp</text>')
    for i, (label, estimate, low, high, conclusive) in enumerate(rows):
        y = 25 + 40 * i
        colour = BAR if conclusive else AXIS
        tip = f"{label}: {estimate * 100:+.1f} pp ({low * 100:+.1f} to {high * 100:+.1f} pp)"
        parts.append(
            f'<g class="interval" data-label="{escape(label)}"><title>{escape(tip)}</title>'
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{escape(label)}</text>'
            f'<line x1="{x_of(low):.1f}" y1="{y}" x2="{x_of(high):.1f}" y2="{y}" stroke="{colour}" stroke-width="3"/>'
            f'<circle cx="{x_of(estimate):.1f}" cy="{y}" r="6" fill="{colour}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)
