"""Small server-rendered SVG charts: no JavaScript, no CDN, fast to draw."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe


def _fmt(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"
    return f"{value:,.0f}{unit}" if float(value).is_integer() else f"{value:,.2f}{unit}"


def bar_chart(points: Sequence[tuple[str, float]], *, unit: str = "", title: str = "", width: int = 720,
              height: int = 180, color: str = "#3056d3") -> SafeString:
    """Vertical bars, one per point, with the largest value marked and a
    tooltip per bar. Labels show under the first, middle and last bar."""
    if not points:
        return mark_safe('<p class="muted">No data yet.</p>')
    top, pad, bottom = 16, 8, 22
    plot_h = height - top - bottom
    peak = max(v for _, v in points) or 1.0
    step = (width - 2 * pad) / len(points)
    bar_w = max(1.0, step * 0.8)
    parts = [f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {width} {height}" '
             f'width="100%" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">',
             f'<line x1="{pad}" y1="{top + plot_h}" x2="{width - pad}" y2="{top + plot_h}" stroke="#dfe3ea"/>',
             f'<text x="{pad}" y="11" font-size="11" fill="#5b6475">max {escape(_fmt(peak, unit))}</text>']
    labelled = {0, len(points) // 2, len(points) - 1}
    for i, (label, value) in enumerate(points):
        h = plot_h * (value / peak)
        x = pad + i * step + (step - bar_w) / 2
        parts.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                     f'fill="{color}" rx="1"><title>{escape(label)}: {escape(_fmt(value, unit))}</title></rect>')
        if i in labelled:
            anchor = "start" if i == 0 else "end" if i == len(points) - 1 else "middle"
            tx = pad if i == 0 else width - pad if i == len(points) - 1 else x + bar_w / 2
            parts.append(f'<text x="{tx:.1f}" y="{height - 6}" font-size="11" fill="#5b6475" '
                         f'text-anchor="{anchor}">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every value in it is escaped above
