"""portal/web/charts.py: the data goes to the browser as JSON (json_script), the same data as a table."""

from __future__ import annotations

import json
import re

from portal.web import charts


def _data(html: str) -> dict:
    match = re.search(r'<script type="application/json">(.*?)</script>', html, re.S)
    assert match, html
    return json.loads(match.group(1))


def test_bar_chart_carries_its_points_as_json_and_as_a_table() -> None:
    html = charts.bar_chart([("2026-11-29", 0.5), ("2026-11-30", 1.25)], unit="$", title="Spend per day")
    data = _data(html)
    assert data["kind"] == "bar" and data["labels"] == ["2026-11-29", "2026-11-30"]
    assert data["datasets"][0]["data"] == [0.5, 1.25] and data["unit"] == "$"
    assert "<td>$0.5000</td>" in html and "<td>$1.25</td>" in html
    assert 'aria-label="Spend per day: 2 points, 2026-11-29 to 2026-11-30; peak $1.25 on 2026-11-30.' in html


def test_hostile_labels_cannot_break_out_of_the_json_or_the_table() -> None:
    evil = '</script><script>alert(1)</script><b>'
    html = charts.bar_chart([(evil, 1.0)], title='"><img src=x onerror=alert(1)>')
    assert "<script>alert(1)" not in html and "<b>" not in html and "<img" not in html
    assert _data(html)["labels"] == [evil]


def test_line_chart_aligns_series_on_the_union_of_their_labels() -> None:
    html = charts.line_chart({"p50": [("a", 1.0), ("b", 2.0)], "p95": [("b", 5.0), ("c", 9.0)]}, unit=" ms")
    data = _data(html)
    assert data["labels"] == ["a", "b", "c"]
    assert [d["data"] for d in data["datasets"]] == [[1.0, 2.0, None], [None, 5.0, 9.0]]
    assert data["datasets"][0]["color"] != data["datasets"][1]["color"]
    assert "<td>—</td>" in html and "<td>9 ms</td>" in html


def test_links_must_be_http_and_show_in_the_table() -> None:
    html = charts.bar_chart([("a", 1.0), ("b", 2.0)],
                            links={"a": "https://lf.example/project/p/traces?x=1&y=2", "b": "javascript:alert(1)"})
    assert _data(html)["links"] == ["https://lf.example/project/p/traces?x=1&y=2", ""]
    assert 'href="https://lf.example/project/p/traces?x=1&amp;y=2"' in html and "javascript:" not in html


def test_no_points_says_so() -> None:
    assert "No data yet" in charts.bar_chart([]) and "No data yet" in charts.line_chart({"x": []})


def test_the_vendored_library_is_the_file_scripts_vendor_static_sh_recorded() -> None:
    """No hand edits: each vendored file matches the sha256 the vendoring step wrote, and is licensed."""
    import hashlib
    from pathlib import Path

    vendor = Path(charts.__file__).resolve().parents[1] / "static" / "portal" / "vendor"
    rows = [line.split() for line in (vendor / "VERSIONS").read_text().splitlines() if not line.startswith("#")]
    assert [row[0] for row in rows] == ["chart.js"]
    for _name, _version, _integrity, file, digest in rows:
        assert hashlib.sha256((vendor / file).read_bytes()).hexdigest() == digest
        assert "MIT License" in (vendor / file.replace(".min.js", ".LICENSE.md")).read_text()


def test_a_series_can_be_given_its_colour() -> None:
    data = _data(charts.line_chart({"requests": [("a", 1.0)], "errors": [("a", 0.0)]}, colors={"errors": "#b42318"}))
    assert [d["color"] for d in data["datasets"]] == [charts.PALETTE[0], "#b42318"]
