"""The supervisor console's service-level dashboard: the 12345 figures of a period (tiles for
the whole of it, a daily trend chart per figure with its target drawn as a line, a table of
every day) and their CSV by hour or by day. Definitions: docs/service-levels.md."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from markupsafe import Markup

from crm.i18n.catalogs import Translator
from crm.reports import service_levels as levels
from crm.reports.charts import Point, line_chart
from crm.web import locale
from crm.web.console.auth import ConsoleUser, console_route
from crm.web.console.common import (
    CONSOLE_KEY,
    audit_export,
    csv_response,
    href,
    render_page,
    today,
)

CHART_WIDTH, CHART_HEIGHT = 600, 220


def _period(request: web.Request) -> levels.Period:
    return levels.Period.from_query(request.query, today=today(request.app[CONSOLE_KEY]))


def _nice_max(value: float, *, whole: bool = False) -> tuple[float, float]:
    """An axis top at or above ``value`` and a grid step giving at most about five lines
    (``whole``: a step of at least 1, for counts)."""
    if value <= 0:
        return 1.0, 1.0
    raw = value / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(step, 1)
    return math.ceil(value / step) * step, float(step)


def _chart(figure: levels.Figure, days: tuple[levels.Figures, ...],
           settings: Any, t: Translator) -> Markup:
    target = levels.target_of(figure, settings)
    scale = 100 if figure.kind == "rate" else 1
    values = [getattr(d, figure.key) for d in days]
    below = [target is not None and v is not None and v < target for v in values]
    points = [Point(d.start.date().isoformat(),
                    float(v) * scale if v is not None else None,
                    d.offered if figure.key != "satisfaction_rate" else d.surveys_rated,
                    d.start.strftime("%m-%d"), flag)
              for d, v, flag in zip(days, values, below, strict=True)]
    label = t.phrase(levels.figure_phrase(figure, settings))
    unit = {"rate": "%", "seconds": " " + t.gettext("s"), "score": "",
            "count": ""}[figure.kind]
    if figure.kind == "rate":
        y_min, y_max, step = 0.0, 100.0, 20.0
    elif figure.kind == "score":
        y_min, y_max, step = 1.0, 5.0, 1.0
    else:
        top = max((float(v) for v in values if v is not None), default=0.0)
        y_min, (y_max, step) = 0.0, _nice_max(top, whole=figure.kind == "count")
    target_value = float(target) * scale if target is not None else None
    target_text = f"{target_value:g}{unit}" if target_value is not None else ""
    desc = t.gettext("%(figure)s per day") % {"figure": label}
    if target_value is not None:
        desc += t.gettext("; the dashed line is the target, %(target)s") % {
            "target": target_text}
    desc += t.gettext("; gaps are days without data.")
    return line_chart(
        points, chart_id=f"chart-{figure.key}", title=label, desc=desc,
        y_min=y_min, y_max=y_max, y_step=step, unit=unit, width=CHART_WIDTH,
        height=CHART_HEIGHT, target=target_value, gettext=t.gettext,
        target_label=t.gettext("Target %(target)s") % {"target": target_text}
        if target_value is not None else "")


def _tile(figure: levels.Figure, found: levels.Figures, settings: Any,
          t: Translator) -> dict[str, Any]:
    value = getattr(found, figure.key)
    target = levels.target_of(figure, settings)
    return {"key": figure.key, "name": t.phrase(levels.figure_phrase(figure, settings)),
            "display": levels.display(figure, value, t.gettext("s")),
            "value": levels.value_text(levels.rounded(figure.key, value)),
            "target": levels.display(figure, target) if target is not None else None,
            "below": figure.key in levels.below_target(found, settings)}


def _cell(figure: levels.Figure, found: levels.Figures, seconds: str) -> str:
    return levels.display(figure, getattr(found, figure.key), seconds)


@console_route(page=True)
async def service_levels_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    period = _period(request)
    day_period = levels.Period(period.since, period.until, "day")
    found = await levels.service_levels(deps.sessions, day_period, deps.tz, deps.service_levels)
    settings = deps.service_levels
    t = locale.chosen(request, user.locale)
    return render_page(
        request, "console/service_levels.html", user, "service-levels", period=day_period,
        report=found, settings=settings,
        tiles=[_tile(f, found.total, settings, t) for f in levels.FIGURES],
        charts=[(f, _chart(f, found.buckets, settings, t)) for f in levels.FIGURES if f.chart],
        figures=levels.FIGURES, cell=_cell,
        label=lambda f: levels.figure_phrase(f, settings),
        csv_day=href("/service-levels.csv", {**day_period.query(), "bucket": "day"}),
        csv_hour=href("/service-levels.csv", {**day_period.query(), "bucket": "hour"}))


@console_route()
async def service_levels_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    period = _period(request)
    found = await levels.service_levels(deps.sessions, period, deps.tz, deps.service_levels)
    rows = [SimpleNamespace(**levels.bucket_json(b, deps.service_levels))
            for b in found.buckets]
    await audit_export(deps, user, "service_levels", period.query(), len(rows))
    return csv_response(
        f"service-levels_{period.bucket}_{period.since.isoformat()}_{period.until.isoformat()}",
        levels.COLUMNS, rows)
