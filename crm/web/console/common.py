"""What the supervisor console's pages share: their dependencies, rendering, local times,
the report filter from a query string, and CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import hdrs, web

from crm.audit import log as audit
from crm.callbacks.dialing import CallbackActions
from crm.errors import InvalidInput
from crm.i18n.phrases import Phrase
from crm.live.wallboard import Wallboard
from crm.reports import satisfaction as reports
from crm.reports.audit_log import AuditFilter
from crm.settings import ServiceLevelSettings
from crm.storage.db import SessionFactory
from crm.storage.models import utcnow
from crm.storage.recordings import RecordingStore
from crm.web import locale
from crm.web.console.auth import PREFIX, ConsoleUser


@dataclass
class ConsoleDeps:
    """What the console needs, built by the composition root."""

    sessions: SessionFactory
    session_secret: str
    wallboard: Wallboard | None = None
    """None: no telephony (the wallboard page says so)."""
    recordings: RecordingStore | None = None
    """None: recordings are not reachable from this server."""
    survey_comments: Path | None = None
    """Where the IVR saves spoken survey comments (None: not reachable from this server)."""
    idle_timeout: float = 8 * 3600
    tz: tzinfo = UTC
    """The hotline's time zone: report days and times shown are local to it."""
    secure_cookies: bool = False
    service_levels: ServiceLevelSettings = field(default_factory=ServiceLevelSettings)
    """Thresholds and targets of the service-level figures (wallboard, dashboard, CSV)."""
    callbacks: CallbackActions | None = None
    """Callback requests (crm.web.callbacks): cancelling one withdraws its call."""
    clock: Callable[[], datetime] = utcnow
    """The console's "now" on the supervision and department pages (overdue, due soon,
    reminders sent); tests set a fixed clock."""


CONSOLE_KEY = web.AppKey("console", ConsoleDeps)
CONSOLE_JINJA_KEY = web.AppKey("console_jinja", jinja2.Environment)


# -- rendering ---------------------------------------------------------------------------------
def render(request: web.Request, template: str, http_status: int = 200, /,
           **context: Any) -> web.Response:
    """A console page in the language of the user (``user`` in ``context``) or the
    request (crm.web.locale)."""
    user = context.get("user")
    t = locale.chosen(request, user.locale if user is not None else None)
    html = locale.render(request.app[CONSOLE_JINJA_KEY], template, t, **context)
    response = web.Response(text=html, content_type="text/html", status=http_status)
    locale.remember(response, request, None)
    return response


def render_page(request: web.Request, template: str, user: ConsoleUser, nav: str,
                **context: Any) -> web.Response:
    """A page of the console for a signed-in user (the navigation, the CSRF token)."""
    return render(request, template, user=user, csrf=user.csrf, nav=nav, **context)


# -- times -------------------------------------------------------------------------------------
def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.strftime(fmt) if value else ""


def local(deps: ConsoleDeps, value: datetime | None) -> datetime | None:
    return value.astimezone(deps.tz) if value else None


def parse_at(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def today(deps: ConsoleDeps) -> date:
    return datetime.now(deps.tz).date()


def report_filter(request: web.Request) -> reports.ReportFilter:
    return reports.ReportFilter.from_query(request.query, today=today(request.app[CONSOLE_KEY]))


def href(path: str, params: dict[str, str]) -> str:
    return f"{PREFIX}{path}?{urlencode(params)}" if params else f"{PREFIX}{path}"


# -- CSV export ---------------------------------------------------------------------------------
def csv_cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, tuple | list):
        return "; ".join(csv_cell(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={csv_cell(v)}" for k, v in value.items())
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def csv_response(name: str, columns: Sequence[str], rows: Iterable[Any]) -> web.Response:
    """UTF-8 with a byte order mark, so spreadsheets read the Chinese right."""
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(getattr(row, c)) for c in columns])
    return web.Response(body=out.getvalue().encode(), content_type="text/csv", charset="utf-8",
                        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{name}.csv"'})


async def audit_export(deps: ConsoleDeps, user: ConsoleUser, what: str,
                       query: dict[str, str], count: int) -> None:
    await audit.write(deps.sessions, actor=user.actor, action="export.csv", object_type=what,
                      detail={"query": query, "rows": count, "via": "console"})


def export_filter(f: reports.ReportFilter) -> reports.ReportFilter:
    """The same filter, for every page (up to the export limit)."""
    return reports.ReportFilter(**{name: getattr(f, name) for name in f.FIELDS})


def span(f: reports.ReportFilter | AuditFilter) -> str:
    """The date range in a file name."""
    return f"{f.since.isoformat()}_{f.until.isoformat()}"


def record_id(request: web.Request) -> int:
    """The record number in the path (routes allow digits only)."""
    value = int(request.match_info["id"])
    if value > 2**31 - 1:
        raise InvalidInput(Phrase("no such record"))
    return value
