"""Server-side SVG charts: well-formed, accessible, data in data-* attributes, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from markupsafe import Markup

from crm.reports.charts import Bar, Point, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))


def test_a_line_chart_names_itself_and_carries_each_point() -> None:
    points = [Point("2026-11-20", 4.5, 2, "11-20"), Point("2026-11-21", None, 0, "11-21"),
              Point("2026-11-22", 1.5, 2, "11-22"), Point("2026-11-23", 4.0, 3, "11-23")]
    root = _parse(line_chart(points, chart_id="trend", title="平均分 Average", desc="By day"))
    assert root.get("role") == "img" and root.get("aria-labelledby") == "trend-title trend-desc"
    assert root.find(f"{SVG}title").text == "平均分 Average"
    assert root.find(f"{SVG}desc").text == "By day"
    circles = root.findall(f".//{SVG}circle")
    assert [(c.get("class"), c.get("data-label"), c.get("data-value"), c.get("data-count"))
            for c in circles] == [("point", "2026-11-20", "4.5", "2"),
                                  ("point", "2026-11-22", "1.5", "2"),
                                  ("point", "2026-11-23", "4", "3")]
    assert circles[0].find(f"{SVG}title").text == "2026-11-20: 4.5 (2)"
    # The day without scores breaks the line: the lone point before it gets no segment.
    lines = root.findall(f"{SVG}polyline")
    assert [len(line.get("points").split()) for line in lines] == [2]
    higher, lower = float(circles[0].get("cy")), float(circles[1].get("cy"))
    assert higher < lower  # SVG y grows downwards: 4.5 sits above 1.5
    ticks = [t.text for t in root.findall(f"{SVG}text") if t.get("class") == "axis x"]
    assert ticks == ["11-20", "11-21", "11-22", "11-23"]


def test_bars_are_scaled_linked_and_escaped() -> None:
    bars = [Bar("agent1", "王芳", 4.25, 4, "/console/surveys?agent=agent1&since=2026-11-01"),
            Bar("evil", '<script>alert("x")</script>', 2.5, 1),
            Bar("", "未知 Unknown", 0, 1)]
    svg = bar_chart(bars, chart_id="agents", title="By agent <all>", desc="d", value_max=5)
    assert "<script>" not in str(svg) and "&lt;script&gt;" in str(svg)
    root = _parse(svg)
    assert root.find(f"{SVG}title").text == "By agent <all>"
    rects = root.findall(f".//{SVG}rect")
    assert [(r.get("data-key"), r.get("data-label"), r.get("data-value"), r.get("data-count"))
            for r in rects] == [("agent1", "王芳", "4.25", "4"),
                                ("evil", '<script>alert("x")</script>', "2.5", "1"),
                                ("", "未知 Unknown", "0", "1")]
    widths = [float(r.get("width")) for r in rects]
    assert widths[0] / widths[1] == 4.25 / 2.5 and widths[2] == 0
    [link] = root.findall(f"{SVG}a")
    assert link.get("href") == "/console/surveys?agent=agent1&since=2026-11-01"
    assert link.find(f"{SVG}rect").get("data-key") == "agent1"
    assert rects[0].find(f"{SVG}title").text == "王芳: 4.25 · 4"


def test_counts_without_a_maximum_scale_to_the_largest() -> None:
    bars = [Bar(str(s), f"{s} 分", c, c) for s, c in ((5, 2), (4, 1), (1, 0))]
    root = _parse(bar_chart(bars, chart_id="dist", title="t", desc="d", show_count=False))
    widths = {r.get("data-key"): float(r.get("width")) for r in root.iter(f"{SVG}rect")}
    assert widths["5"] == 2 * widths["4"] and widths["1"] == 0
    values = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "value"]
    assert values == ["2", "1", "0"]


def test_no_data_is_said_not_drawn() -> None:
    for svg in (line_chart([Point("2026-11-20", None)], chart_id="a", title="t", desc="d"),
                bar_chart([], chart_id="b", title="t", desc="d")):
        root = _parse(svg)
        assert root.findall(f".//{SVG}circle") == [] and root.findall(f".//{SVG}rect") == []
        assert "No data" in root.find(f"{SVG}desc").text


def test_one_point_sits_in_the_middle() -> None:
    root = _parse(line_chart([Point("2026-11-20", 3.0, 1)], chart_id="one", title="t",
                             desc="d", width=400))
    [circle] = root.findall(f".//{SVG}circle")
    assert abs(float(circle.get("cx")) - (44 + (400 - 44 - 16) / 2)) < 0.1
