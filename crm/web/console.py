"""The supervisor console, mounted under /console: the live wallboard, the satisfaction
dashboard, drill-down lists of surveys and consultations (with CSV export), a consultation's
full record with its recording, the low-score follow-up queue, and the audit log (admins).

Every route declares the least role it needs (crm.web.console_auth.console_route). What a
supervisor reads about residents is audited: a consultation or resident record viewed, a
list of calls or surveys shown, a CSV exported, a recording played.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import WSMsgType, hdrs, web
from aiohttp_session import get_session, new_session, session_middleware

from crm import agents, audit, consultation_desk, reports, surveys
from crm.auth import has_role
from crm.charts import Bar, Point, bar_chart, line_chart
from crm.db import SessionFactory
from crm.errors import HotlineError, InvalidInput, PermissionDenied
from crm.screen_pop import summarise_ivr
from crm.wallboard import Wallboard
from crm.web.api import STATUS_FOR_ERROR, error_response
from crm.web.console_auth import (
    CONSOLE_ROLE,
    IDLE_KEY,
    PREFIX,
    SESSIONS_KEY,
    ConsoleUser,
    after_login,
    check_csrf,
    check_origin,
    console_route,
    csrf_token,
    session_storage,
    signed_in,
    start_session,
)
from crm.web.recordings import STORE_KEY, RecordingStore, get_recording, recording_of

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; object-src 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ConsoleDeps:
    """What the console needs, built by the composition root."""

    sessions: SessionFactory
    session_secret: str
    wallboard: Wallboard | None = None
    """None: no telephony (the wallboard page says so)."""
    recordings: RecordingStore | None = None
    """None: recordings are not reachable from this server."""
    idle_timeout: float = 8 * 3600
    tz: tzinfo = UTC
    """The hotline's time zone: report days and times shown are local to it."""
    secure_cookies: bool = False


CONSOLE_KEY = web.AppKey("console", ConsoleDeps)
CONSOLE_JINJA_KEY = web.AppKey("console_jinja", jinja2.Environment)


# -- errors and rendering -----------------------------------------------------------------------
@web.middleware
async def console_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become an error page (page routes) or a JSON error (everything else)."""
    try:
        response = await handler(request)
    except HotlineError as exc:
        status = next((STATUS_FOR_ERROR[c] for c in type(exc).__mro__
                       if c in STATUS_FOR_ERROR), 500)
        if status == 500:
            log.error("%s %s: unmapped domain error %r", request.method, request.path, exc)
        message = exc.message if status != 500 else "internal error"
        if getattr(request.match_info.handler, "html_errors", False):
            response = _render(request, "console/error.html", status, user=None,
                               code=status, message=message)
        else:
            response = error_response(status, exc.code if status != 500 else "internal_error",
                                      message)
    response.headers[hdrs.CONTENT_SECURITY_POLICY] = CSP
    response.headers.setdefault(hdrs.CACHE_CONTROL, "no-store")
    return response


def _render(request: web.Request, template: str, http_status: int = 200, /,
            **context: Any) -> web.Response:
    html = request.app[CONSOLE_JINJA_KEY].get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=http_status)


def _page(request: web.Request, template: str, user: ConsoleUser, nav: str,
          **context: Any) -> web.Response:
    return _render(request, template, user=user, csrf=user.csrf, nav=nav, **context)


def _when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return value.strftime(fmt) if value else ""


def _local(deps: ConsoleDeps, value: datetime | None) -> datetime | None:
    return value.astimezone(deps.tz) if value else None


def _parse_at(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _today(deps: ConsoleDeps) -> date:
    return datetime.now(deps.tz).date()


def _filter(request: web.Request) -> reports.ReportFilter:
    return reports.ReportFilter.from_query(request.query, today=_today(request.app[CONSOLE_KEY]))


# -- sign in and out ----------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    target = after_login(request.query.get("next"))
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther(target)
    session = await get_session(request)
    return _render(request, "console/login.html", user=None, csrf=csrf_token(session),
                   error=None, next=target)


async def login(request: web.Request) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    session = await get_session(request)
    form = await request.post()
    try:
        await check_csrf(request, session)
    except PermissionDenied:
        return _render(request, "console/login.html", 403, user=None, csrf=csrf_token(session),
                       error="表单已过期，请重新登录 · The form expired; please sign in again.",
                       next=after_login(str(form.get("next", ""))))
    target = after_login(str(form.get("next", "")))
    login_name = str(form.get("login", "")).strip().lower()[:64]
    account = await agents.authenticate(deps.sessions, login_name,
                                        str(form.get("password", "")))
    if account is None:
        await audit.write(deps.sessions, actor=f"agent:{login_name or '?'}",
                          action="console.login_failed", object_type="agent",
                          object_id=login_name)
        return _render(request, "console/login.html", 401, user=None, csrf=csrf_token(session),
                       error="账号或密码错误 · Wrong login or password.", next=target)
    if not has_role(account.role, CONSOLE_ROLE):
        await audit.write(deps.sessions, actor=f"agent:{account.login}",
                          action="console.login_refused", object_type="agent",
                          object_id=account.login, detail={"role": account.role})
        return _render(request, "console/login.html", 403, user=None, csrf=csrf_token(session),
                       error="主管控制台仅限主管和管理员 · The console is for supervisors "
                             "and admins. Agents use the desk.", next=target)
    session = await new_session(request)  # a fresh session: no fixation
    start_session(session, account.login)
    await audit.write(deps.sessions, actor=f"agent:{account.login}", action="console.login",
                      object_type="agent", object_id=account.login)
    raise web.HTTPSeeOther(target)


@console_route(post=True)
async def logout(request: web.Request, user: ConsoleUser) -> web.Response:
    (await get_session(request)).invalidate()
    await audit.write(request.app[CONSOLE_KEY].sessions, actor=user.actor,
                      action="console.logout", object_type="agent", object_id=user.login)
    raise web.HTTPSeeOther(f"{PREFIX}/login")


# -- the wallboard ------------------------------------------------------------------------------
def _wallboard_state(deps: ConsoleDeps) -> dict[str, Any] | None:
    return deps.wallboard.state() if deps.wallboard is not None else None


@console_route(page=True)
async def wallboard_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    return _page(request, "console/wallboard.html", user, "wallboard",
                 board=_wallboard_state(deps), session_expires=int(user.expires_at))


@console_route()
async def wallboard_state(request: web.Request, user: ConsoleUser) -> web.Response:
    board = _wallboard_state(request.app[CONSOLE_KEY])
    if board is None:
        raise InvalidInput("no telephony connected: there is no live queue to show")
    return web.json_response(board)


@console_route()
async def wallboard_socket(request: web.Request, user: ConsoleUser) -> web.StreamResponse:
    """Pushes every change of the wallboard; closes when the session idles out."""
    check_origin(request)
    wallboard = request.app[CONSOLE_KEY].wallboard
    if wallboard is None:
        raise InvalidInput("no telephony connected: there is no live queue to show")
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    wallboard.attach(ws)
    try:
        await ws.send_json({"type": "wallboard", **wallboard.state()})
        while not ws.closed:
            remaining = user.expires_at - time.time()
            if remaining <= 0:
                await ws.close(code=4401, message=b"session expired")
                break
            try:
                msg = await ws.receive(timeout=min(remaining, 3600.0))
            except TimeoutError:
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                            WSMsgType.ERROR):
                break
    finally:
        wallboard.detach(ws)
    return ws


# -- the satisfaction dashboard -----------------------------------------------------------------
def _href(path: str, params: dict[str, str]) -> str:
    return f"{PREFIX}{path}?{urlencode(params)}" if params else f"{PREFIX}{path}"


def _charts(report: reports.SatisfactionReport) -> dict[str, Any]:
    f = report.filter
    trend = [Point(d.day.isoformat(), d.average, d.count, d.day.strftime("%m-%d"))
             for d in report.trend]

    def groups(stats: Sequence[reports.GroupStat], field: str) -> list[Bar]:
        return [Bar(s.key, s.label, s.average, s.count,
                    _href("/surveys", f.query(**{field: s.key}, page=1)) if s.key else None)
                for s in stats]

    span = f"{f.since.isoformat()} – {f.until.isoformat()}"
    return {
        "trend": line_chart(
            trend, chart_id="chart-trend", title="每日平均满意度 · Average score by day",
            desc=f"Average satisfaction score (1-5) per day, {span}; gaps are days without "
                 "scores."),
        "distribution": bar_chart(
            [Bar(str(score), f"{score} 分", count, count,
                 _href("/surveys", f.query(min_score=score, max_score=score, page=1)))
             for score, count in sorted(report.distribution.items(), reverse=True)],
            chart_id="chart-distribution", title="评分分布 · Score distribution",
            desc=f"Number of surveys per score, {span}.", show_count=False),
        "agents": bar_chart(
            groups(report.per_agent, "agent"), chart_id="chart-agents",
            title="坐席 · By agent", desc=f"Average score and number of scores per agent, {span}.",
            value_max=5),
        "departments": bar_chart(
            groups(report.per_department, "department"), chart_id="chart-departments",
            title="部门 · By department",
            desc=f"Average score and number of scores per handling department, {span}.",
            value_max=5),
        "categories": bar_chart(
            groups(report.per_category, "category"), chart_id="chart-categories",
            title="工单类别 · By case category",
            desc=f"Average score and number of scores per case category, {span}.",
            value_max=5),
    }


@console_route(page=True)
async def dashboard(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _filter(request)
    report = await reports.satisfaction_report(deps.sessions, f, deps.tz)
    return _page(request, "console/dashboard.html", user, "dashboard", f=f, report=report,
                 charts=_charts(report), choices=await reports.filter_choices(deps.sessions),
                 surveys_href=_href("/surveys", f.query()),
                 low_href=_href("/surveys", f.query(max_score=reports.LOW_SCORE)))


# -- drill-down lists and CSV -------------------------------------------------------------------
def _cell(value: Any) -> str:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, tuple | list):
        return "; ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={_cell(v)}" for k, v in value.items())
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
        writer.writerow([_cell(getattr(row, c)) for c in columns])
    return web.Response(body=out.getvalue().encode(), content_type="text/csv", charset="utf-8",
                        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{name}.csv"'})


async def _audit_export(deps: ConsoleDeps, user: ConsoleUser, what: str,
                        query: dict[str, str], count: int) -> None:
    await audit.write(deps.sessions, actor=user.actor, action="export.csv", object_type=what,
                      detail={"query": query, "rows": count, "via": "console"})


def _export_filter(f: reports.ReportFilter) -> reports.ReportFilter:
    return reports.ReportFilter(**{name: getattr(f, name) for name in f.FIELDS})


def _span(f: reports.ReportFilter | reports.AuditFilter) -> str:
    return f"{f.since.isoformat()}_{f.until.isoformat()}"


@console_route(page=True)
async def surveys_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _filter(request)
    rows = await reports.list_surveys(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="survey.search",
                      object_type="survey",
                      detail={"query": f.query(), "ids": [r.id for r in rows], "via": "console"})
    return _page(request, "console/surveys.html", user, "surveys", f=f, rows=rows,
                 choices=await reports.filter_choices(deps.sessions),
                 csv_href=_href("/surveys.csv", f.query(page=1)),
                 next_href=(_href("/surveys", f.query(page=f.page + 1))
                            if len(rows) == reports.PAGE_SIZE else None))


@console_route()
async def surveys_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _export_filter(_filter(request))
    rows = await reports.list_surveys(deps.sessions, f, deps.tz, limit=reports.EXPORT_LIMIT)
    await _audit_export(deps, user, "survey", f.query(), len(rows))
    return csv_response(f"surveys_{_span(f)}", reports.CSV_SURVEY_COLUMNS, rows)


@console_route(page=True)
async def consultations_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _filter(request)
    rows = await reports.list_consultations(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="consultation.search",
                      object_type="consultation",
                      detail={"query": f.query(), "ids": [r.id for r in rows], "via": "console"})
    return _page(request, "console/consultations.html", user, "consultations", f=f, rows=rows,
                 choices=await reports.filter_choices(deps.sessions),
                 outcomes=[(o, o) for o in reports.OUTCOMES],
                 csv_href=_href("/consultations.csv", f.query(page=1)),
                 next_href=(_href("/consultations", f.query(page=f.page + 1))
                            if len(rows) == reports.PAGE_SIZE else None))


@console_route()
async def consultations_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _export_filter(_filter(request))
    rows = await reports.list_consultations(deps.sessions, f, deps.tz,
                                            limit=reports.EXPORT_LIMIT)
    await _audit_export(deps, user, "consultation", f.query(), len(rows))
    return csv_response(f"consultations_{_span(f)}", reports.CSV_CONSULTATION_COLUMNS, rows)


def _record_id(request: web.Request) -> int:
    value = int(request.match_info["id"])
    if value > 2**31 - 1:
        raise InvalidInput("no such record")
    return value


@console_route(page=True)
async def consultation_page(request: web.Request, user: ConsoleUser) -> web.Response:
    """The whole record of one call: the IVR transcript, the agent's notes and disposition,
    the survey answers, and the recording."""
    deps = request.app[CONSOLE_KEY]
    consultation_id = _record_id(request)
    detail = await consultation_desk.get_consultation(deps.sessions, consultation_id)
    resident_id = await reports.resident_of_consultation(deps.sessions, consultation_id)
    call_surveys = await surveys.list_surveys(deps.sessions, call_id=detail.call_id)
    ivr = summarise_ivr(detail.steps)
    transcript = [(_when(_local(deps, _parse_at(line.at)), "%H:%M:%S"), line)
                  for line in ivr.transcript]
    call_id, announced = await recording_of(deps.sessions, consultation_id)
    recorded = (deps.recordings is not None
                and deps.recordings.locate(call_id, announced) is not None)
    await audit.write(deps.sessions, actor=user.actor, action="consultation.read",
                      object_type="consultation", object_id=consultation_id,
                      detail={"call_id": detail.call_id, "resident": resident_id,
                              "via": "console"})
    return _page(request, "console/consultation.html", user, "consultations", c=detail,
                 ivr=ivr, transcript=transcript, surveys=call_surveys, recorded=recorded,
                 announced=announced, resident_id=resident_id,
                 started=_when(_local(deps, detail.started_at)),
                 ended=_when(_local(deps, detail.ended_at)))


@console_route(page=True)
async def resident_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    resident_id = _record_id(request)
    record = await reports.resident_record(deps.sessions, resident_id, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="resident.read",
                      object_type="resident", object_id=resident_id,
                      detail={"consultations": [c.id for c in record.consultations],
                              "via": "console"})
    return _page(request, "console/resident.html", user, "consultations", r=record)


# -- the follow-up queue ------------------------------------------------------------------------
FOLLOW_UP_COLUMNS = ("id", "survey_id", "score", "phone", "case_numbers", "agent_login",
                     "created_at", "status", "assignee_login", "assigned_at", "assigned_by",
                     "closed_at", "closed_by", "note")


def _follow_up_query(request: web.Request, user: ConsoleUser) -> tuple[str | None, str | None]:
    status = request.query.get("status", "open")
    if status not in ("open", "closed", "all"):
        raise InvalidInput("status must be open, closed or all")
    assignee = request.query.get("assignee") or None
    if assignee == "me":
        assignee = user.login
    if assignee is not None and not reports.LOGIN_PATTERN.fullmatch(assignee):
        raise InvalidInput("assignee is not a login")
    return (None if status == "all" else status), assignee


@console_route(page=True)
async def follow_ups_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    status, assignee = _follow_up_query(request, user)
    items = await surveys.list_follow_ups(deps.sessions, status=status,
                                          assignee_login=assignee, limit=500)
    consultations = await reports.consultations_of_surveys(deps.sessions,
                                                           [i.survey_id for i in items])
    await audit.write(deps.sessions, actor=user.actor, action="survey_follow_up.search",
                      object_type="survey_follow_up",
                      detail={"status": status, "assignee": assignee,
                              "ids": [i.id for i in items], "via": "console"})
    query = {k: v for k, v in request.query.items() if k in ("status", "assignee")}
    return _page(request, "console/follow_ups.html", user, "follow-ups", items=items,
                 consultations=consultations, status=request.query.get("status", "open"),
                 assignee=request.query.get("assignee", ""),
                 choices=await reports.filter_choices(deps.sessions),
                 local=lambda v: _when(_local(deps, v), "%Y-%m-%d %H:%M"),
                 csv_href=_href("/follow-ups.csv", query), back=_href("/follow-ups", query))


@console_route()
async def follow_ups_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    status, assignee = _follow_up_query(request, user)
    items = await surveys.list_follow_ups(deps.sessions, status=status,
                                          assignee_login=assignee, limit=reports.EXPORT_LIMIT)
    await _audit_export(deps, user, "survey_follow_up",
                        {"status": status or "all", "assignee": assignee or ""}, len(items))
    return csv_response(f"follow-ups_{status or 'all'}", FOLLOW_UP_COLUMNS, items)


def _back(form: Any) -> str:
    """Where a follow-up form returns to: a console follow-up list, nothing else."""
    back = str(form.get("back", ""))
    return back if back.startswith(f"{PREFIX}/follow-ups") and "//" not in back \
        else f"{PREFIX}/follow-ups"


@console_route(page=True, post=True)
async def assign_follow_up(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    item = await surveys.assign_follow_up(
        deps.sessions, _record_id(request), agent_login=str(form.get("assignee", "")).strip(),
        actor=user.actor)
    raise web.HTTPSeeOther(f"{_back(form)}#follow-up-{item.id}")


@console_route(page=True, post=True)
async def close_follow_up(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    form = await request.post()
    item = await surveys.close_follow_up(deps.sessions, _record_id(request),
                                         note=str(form.get("note", "")), actor=user.actor)
    raise web.HTTPSeeOther(f"{_back(form)}#follow-up-{item.id}")


# -- the audit log (admins) ---------------------------------------------------------------------
def _audit_filter(request: web.Request) -> reports.AuditFilter:
    return reports.AuditFilter.from_query(request.query, today=_today(request.app[CONSOLE_KEY]))


@console_route("admin", page=True)
async def audit_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _audit_filter(request)
    rows = await reports.audit_entries(deps.sessions, f, deps.tz)
    await audit.write(deps.sessions, actor=user.actor, action="audit.read", object_type="audit",
                      detail={"query": f.query(), "rows": len(rows), "via": "console"})
    return _page(request, "console/audit.html", user, "audit", f=f, rows=rows,
                 detail_text=lambda d: json.dumps(d, ensure_ascii=False, sort_keys=True),
                 csv_href=_href("/audit.csv", f.query(page=1)),
                 next_href=(_href("/audit", f.query(page=f.page + 1))
                            if len(rows) == reports.PAGE_SIZE else None))


@console_route("admin")
async def audit_csv(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = _audit_filter(request)
    f = reports.AuditFilter(f.since, f.until, f.actor, f.action, f.object_type, f.object_id)
    rows = await reports.audit_entries(deps.sessions, f, deps.tz, limit=reports.EXPORT_LIMIT)
    await _audit_export(deps, user, "audit", f.query(), len(rows))
    return csv_response(f"audit_{_span(f)}", reports.CSV_AUDIT_COLUMNS, rows)


# -- the application ----------------------------------------------------------------------------
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/", wallboard_page),
    ("GET", "/wallboard/state", wallboard_state),
    ("GET", "/wallboard/ws", wallboard_socket),
    ("GET", "/dashboard", dashboard),
    ("GET", "/surveys", surveys_page),
    ("GET", "/surveys.csv", surveys_csv),
    ("GET", "/consultations", consultations_page),
    ("GET", "/consultations.csv", consultations_csv),
    ("GET", r"/consultations/{id:\d+}", consultation_page),
    ("GET", r"/consultations/{id:\d+}/recording", get_recording),
    ("GET", r"/residents/{id:\d+}", resident_page),
    ("GET", "/follow-ups", follow_ups_page),
    ("GET", "/follow-ups.csv", follow_ups_csv),
    ("POST", r"/follow-ups/{id:\d+}/assign", assign_follow_up),
    ("POST", r"/follow-ups/{id:\d+}/close", close_follow_up),
    ("GET", "/audit", audit_page),
    ("GET", "/audit.csv", audit_csv),
]


async def _close_sockets(app: web.Application) -> None:
    wallboard = app[CONSOLE_KEY].wallboard
    if wallboard is not None:
        with contextlib.suppress(Exception):
            await wallboard.close_sockets()


def create_console_app(deps: ConsoleDeps, jinja: jinja2.Environment) -> web.Application:
    """The sub-application mounted at ``PREFIX``."""
    storage = session_storage(deps.session_secret, idle_timeout=deps.idle_timeout,
                              secure=deps.secure_cookies)
    app = web.Application(middlewares=[console_errors, session_middleware(storage)],
                          client_max_size=64 * 1024)
    app[CONSOLE_KEY] = deps
    app[CONSOLE_JINJA_KEY] = jinja
    app[SESSIONS_KEY] = deps.sessions
    app[IDLE_KEY] = float(deps.idle_timeout)
    if deps.recordings is not None:
        app[STORE_KEY] = deps.recordings
    app.on_shutdown.append(_close_sockets)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
