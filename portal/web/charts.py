"""Charts drawn in the browser by the vendored Chart.js (`portal/static/portal/vendor/`, loaded
with `charts.js` by `base.html`), with the values on hover and from the keyboard.

Each chart is a `<figure data-chart>` holding its data as JSON (`json_script`: never JS built
from strings) and the same data as a table: the screen readers' version, and what a page shows
when JavaScript is off. `charts.js` draws every such figure and hides the table visually.

    charts.bar_chart([("2026-11-30", 1.5), ...], unit="$", title="Spend per day")
    charts.line_chart({"p50": [("2026-11-30", 120.0), ...], "p95": [...]}, unit=" ms", title="Latency")

`links` (label -> URL) makes a point (and its table row) a link, e.g. into Langfuse's traces of
that day."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.template.loader import render_to_string
from django.utils.html import json_script
from django.utils.safestring import SafeString, mark_safe

PALETTE = ("#3056d3", "#067647", "#b54708", "#7a5af8", "#b42318", "#0e7490", "#c11574", "#475467")


def fmt(value: float | None, unit: str = "") -> str:
    """A value as the chart's tooltip and table show it (charts.js formats the same way)."""
    if value is None:
        return "—"
    if unit == "$":
        return f"${value:,.4f}" if abs(value) < 1 else f"${value:,.2f}"
    if unit == "%":
        return f"{value:,.1f}%"
    return f"{value:,.0f}{unit}" if float(value).is_integer() or unit == " ms" else f"{value:,.2f}{unit}"


def _summary(title: str, labels: Sequence[str], series: Mapping[str, Sequence[float | None]], unit: str) -> str:
    """One sentence for the canvas' accessible name: the range and each series' peak."""
    parts = [f"{title}: {len(labels)} points" if title else f"{len(labels)} points"]
    if labels:
        parts[0] += f", {labels[0]} to {labels[-1]}"
    for name, values in series.items():
        known = [(v, labels[i]) for i, v in enumerate(values) if v is not None]
        if known:
            peak, at = max(known, key=lambda p: p[0])
            parts.append(f"{name} peaks at {fmt(peak, unit)} on {at}" if len(series) > 1 else
                         f"peak {fmt(peak, unit)} on {at}")
    return "; ".join(parts)


def _safe_link(url: str) -> str:
    """Only http(s) links: a point's link is followed by a click, so never `javascript:`."""
    return url if url.lower().startswith(("https://", "http://")) else ""


def _chart(kind: str, labels: list[str], datasets: list[dict[str, Any]], *, unit: str, title: str,
           height: int, links: Mapping[str, str] | None) -> SafeString:
    if not labels:
        return mark_safe('<p class="muted">No data yet.</p>')
    link_list = [_safe_link((links or {}).get(label, "")) for label in labels]
    data = {"kind": kind, "unit": unit, "title": title, "labels": labels, "datasets": datasets,
            "links": link_list if any(link_list) else []}
    values = {d["label"]: d["data"] for d in datasets}
    rows = [{"label": label, "link": link_list[i], "cells": [fmt(d["data"][i], unit) for d in datasets]}
            for i, label in enumerate(labels)]
    return render_to_string("web/dashboards/_chart.html", {
        "data": json_script(data), "title": title, "height": height, "rows": rows,
        "names": [d["label"] for d in datasets], "summary": _summary(title, labels, values, unit)})


def bar_chart(points: Sequence[tuple[str, float]], *, unit: str = "", title: str = "", width: int = 720,
              height: int = 180, color: str = "#3056d3", links: Mapping[str, str] | None = None) -> SafeString:
    """Vertical bars, one per point (label, value). `width` is kept for callers of the SVG
    version: the chart fills its container."""
    labels = [str(label) for label, _ in points]
    values = [float(value) for _, value in points]
    return _chart("bar", labels, [{"label": title or "value", "data": values, "color": color}],
                  unit=unit, title=title, height=height, links=links)


def line_chart(series: Mapping[str, Sequence[tuple[str, float | None]]], *, unit: str = "", title: str = "",
               height: int = 200, links: Mapping[str, str] | None = None,
               colors: Mapping[str, str] | None = None) -> SafeString:
    """One line per series; the x axis is the union of the series' labels in first-seen order
    (a series without a point at a label has a gap there). `colors` sets a series' colour by name
    (errors in the palette's red); the others take the palette's in turn."""
    labels: list[str] = []
    seen: set[str] = set()
    for points in series.values():
        for label, _ in points:
            if str(label) not in seen:
                seen.add(str(label))
                labels.append(str(label))
    datasets = []
    for i, (name, points) in enumerate(series.items()):
        by_label = {str(label): (None if value is None else float(value)) for label, value in points}
        datasets.append({"label": str(name), "data": [by_label.get(label) for label in labels],
                         "color": (colors or {}).get(str(name), PALETTE[i % len(PALETTE)])})
    return _chart("line", labels, datasets, unit=unit, title=title, height=height, links=links)
