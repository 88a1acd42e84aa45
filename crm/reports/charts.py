"""Server-side SVG charts for the supervisor console: no script, no chart library, no CDN.

Each chart is an ``<svg role="img">`` named by its ``<title>`` and ``<desc>``; every data
point is an element of class ``point`` (line) or ``bar`` (bars) with its numbers in
``data-*`` attributes and a ``<title>`` of its own (the tooltip, and what a screen reader
reads). Text is escaped here; the result is ``Markup`` for the templates. The few words a
chart adds itself are English message ids, translated by the ``gettext`` given. Colours and
fonts come from console.css (the page's CSP allows no inline styles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Point:
    """One x position of a line chart; ``value`` None leaves a gap (no data that day)."""

    label: str
    value: float | None
    count: int = 0
    tick: str | None = None
    """A shorter label for the x axis (11-20 for 2026-11-20); None: the label."""
    below: bool = False
    """The value falls short of the chart's target: the point is drawn as such (class
    ``below``, and said in its title), not by colour alone."""


@dataclass(frozen=True)
class Bar:
    key: str
    """What the bar stands for (a score, a login, a code): its ``data-key``."""
    label: str
    value: float
    count: int = 0
    href: str | None = None
    """Where clicking the bar leads (the drill-down list)."""


def _num(value: float) -> str:
    """Numbers as they appear in attributes and labels: 4.0 -> 4, 4.25 -> 4.25."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


def _attrs(**attrs: object) -> Markup:
    parts = []
    for name, value in attrs.items():
        if value is None:
            continue
        parts.append(Markup(' {}="{}"').format(Markup(name.rstrip("_").replace("_", "-")),
                                                escape(str(value))))
    return Markup("").join(parts)


def _frame(chart_id: str, title: str, desc: str, width: int, height: int,
           body: list[Markup], kind: str) -> Markup:
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" class="chart {kind}" id="{id}" role="img" '
        'viewBox="0 0 {w} {h}" width="{w}" height="{h}" aria-labelledby="{id}-title {id}-desc">'
        '<title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>{body}</svg>'
    ).format(kind=kind, id=escape(chart_id), w=width, h=height, title=escape(title),
             desc=escape(desc), body=Markup("").join(body))


Gettext = Callable[[str], str]


def _same(message: str) -> str:
    return message


def _empty(chart_id: str, title: str, width: int, gettext: Gettext) -> Markup:
    no_data = gettext("No data")
    return _frame(chart_id, title, no_data, width, 60,
                  [Markup('<text class="empty" x="{x}" y="35">{t}</text>')
                   .format(x=width // 2, t=no_data)], "empty-chart")


def line_chart(points: Sequence[Point], *, chart_id: str, title: str, desc: str,
               y_min: float = 1, y_max: float = 5, unit: str = "", width: int = 760,
               height: int = 260, y_step: float = 1, target: float | None = None,
               target_label: str = "", gettext: Gettext = _same) -> Markup:
    """A line through the points with a value (e.g. the average score per day); grid lines
    every ``y_step``; ``target``, when given, is drawn as a dashed line of class ``target``
    labelled ``target_label``."""
    if not any(p.value is not None for p in points):
        return _empty(chart_id, title, width, gettext)
    left, right, top, bottom = 44, 16, 16, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    step = plot_w / max(len(points) - 1, 1)

    def x(i: int) -> float:
        return left + (i * step if len(points) > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - y_min) / (y_max - y_min))

    body: list[Markup] = []
    ticks = [y_min + n * y_step for n in range(int((y_max - y_min) / y_step + 1e-9) + 1)]
    for tick in ticks:
        body.append(Markup('<line class="grid" x1="{l}" x2="{r}" y1="{y}" y2="{y}"/>'
                           '<text class="axis" x="{tx}" y="{ty}">{t}</text>').format(
            l=left, r=width - right, y=f"{y(tick):.1f}", tx=left - 8, ty=f"{y(tick) + 4:.1f}",
            t=_num(tick)))
    if target is not None:
        body.append(Markup(
            '<line class="target" x1="{l}" x2="{r}" y1="{y}" y2="{y}"{a}>'
            '<title>{label}</title></line>'
            '<text class="target-label" x="{tx}" y="{ty}">{label}</text>').format(
            l=left, r=width - right, y=f"{y(target):.1f}", a=_attrs(data_value=_num(target)),
            label=escape(target_label or f"{_num(target)}{unit}"), tx=width - right - 4,
            ty=f"{y(target) - 5:.1f}"))
    every = max(1, -(-len(points) // 10))  # at most about ten labels on the x axis
    for i, p in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            body.append(Markup('<text class="axis x" x="{x}" y="{y}">{t}</text>').format(
                x=f"{x(i):.1f}", y=height - bottom + 18, t=escape(p.tick or p.label)))
    segments: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p.value is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(i):.1f},{y(p.value):.1f}")
    for segment in segments:
        if len(segment) > 1:
            body.append(Markup('<polyline class="line" points="{}"/>').format(" ".join(segment)))
    for i, p in enumerate(points):
        if p.value is None:
            continue
        tip = f"{p.label}: {_num(p.value)}{unit} ({p.count})"
        if p.below:
            tip += " — " + gettext("below target")
        body.append(Markup('<circle class="{cls}" cx="{cx}" cy="{cy}" r="5"{a}>'
                           '<title>{tip}</title></circle>').format(
            cls="point below" if p.below else "point",
            cx=f"{x(i):.1f}", cy=f"{y(p.value):.1f}",
            a=_attrs(data_label=p.label, data_value=_num(p.value), data_count=p.count,
                     data_below="true" if p.below else None),
            tip=escape(tip)))
    return _frame(chart_id, title, desc, width, height, body, "line-chart")


def bar_chart(bars: Sequence[Bar], *, chart_id: str, title: str, desc: str,
              value_max: float | None = None, unit: str = "", show_count: bool = True,
              width: int = 760, gettext: Gettext = _same) -> Markup:
    """Horizontal bars, one row each, labelled on the left (names may be long or Chinese)."""
    if not bars:
        return _empty(chart_id, title, width, gettext)
    label_w, right, row_h, top = 170, 120, 30, 8
    height = top * 2 + row_h * len(bars)
    most = value_max if value_max is not None else max((b.value for b in bars), default=0)
    most = most or 1
    plot_w = width - label_w - right
    body: list[Markup] = []
    for i, b in enumerate(bars):
        y = top + i * row_h
        bar_w = max(plot_w * b.value / most, 0 if b.value == 0 else 2)
        text = _num(b.value) + unit + (f" · {b.count}" if show_count else "")
        tip = f"{b.label}: {text}"
        row = Markup(
            '<text class="label" x="{lx}" y="{ty}">{label}</text>'
            '<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}"{a}>'
            '<title>{tip}</title></rect>'
            '<text class="value" x="{vx}" y="{ty}">{text}</text>').format(
            lx=label_w - 8, ty=f"{y + row_h / 2 + 5:.1f}", label=escape(_clip(b.label)),
            x=label_w, y=y + 4, w=f"{bar_w:.1f}", h=row_h - 8,
            a=_attrs(data_key=b.key, data_label=b.label, data_value=_num(b.value),
                     data_count=b.count),
            tip=escape(tip), vx=f"{label_w + bar_w + 6:.1f}", text=escape(text))
        if b.href:
            row = Markup('<a href="{href}">{row}</a>').format(href=escape(b.href), row=row)
        body.append(row)
    return _frame(chart_id, title, desc, width, height, body, "bar-chart")


def _clip(label: str, limit: int = 14) -> str:
    return label if len(label) <= limit else label[:limit - 1] + "…"
