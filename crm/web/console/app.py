"""The supervisor console, mounted under /console: sign-in, the live wallboard and the
satisfaction dashboard here; the drill-down lists, records, follow-up queue and audit log in
crm.web.console.records; recordings in crm.web.console.recordings.

Every route declares the least role it needs (crm.web.console.auth.console_route); domain
errors become an error page or a JSON error in one place (console_errors).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import jinja2
from aiohttp import hdrs, web
from aiohttp.web_urldispatcher import MatchInfoError
from aiohttp_session import get_session, new_session, session_middleware

from crm.agents.auth import has_role
from crm.audit import log as audit
from crm.errors import InvalidInput, PermissionDenied
from crm.i18n.catalogs import Translator
from crm.i18n.phrases import N_, Phrase
from crm.reports import satisfaction as reports
from crm.reports.charts import Bar, Point, bar_chart, line_chart
from crm.reports.knowledge_share import knowledge_share
from crm.web import locale
from crm.web.console.auth import (
    CONSOLE_ROLE,
    IDLE_KEY,
    PREFIX,
    SESSIONS_KEY,
    ConsoleUser,
    after_login,
    console_route,
    session_storage,
    signed_in,
    start_session,
)
from crm.web.console.common import (
    CONSOLE_JINJA_KEY,
    CONSOLE_KEY,
    ConsoleDeps,
    href,
    render,
    render_page,
    report_filter,
)
from crm.web.console.data_admin import ROUTES as DATA_ROUTES
from crm.web.console.department import (
    DEPARTMENT_PAGE,
    department_act,
    department_of,
    department_page,
)
from crm.web.console.recordings import (
    STORE_KEY,
    SURVEY_COMMENTS_KEY,
    get_recording,
    get_survey_comment,
)
from crm.web.console.records import (
    assign_follow_up,
    audit_csv,
    audit_page,
    close_follow_up,
    consultation_page,
    consultations_csv,
    consultations_page,
    follow_ups_csv,
    follow_ups_page,
    resident_page,
    surveys_csv,
    surveys_page,
)
from crm.web.console.service_levels import service_levels_csv, service_levels_page
from crm.web.console.supervision import (
    decide_extension,
    rule_on_return,
    send_reminders,
    supervision_page,
)
from crm.web.errors import ErrorReply, error_middleware, for_reader, json_error
from crm.web.session import (
    SECURITY_KEY,
    WebSessions,
    audit_origin,
    check_csrf,
    check_origin,
    csrf_token,
)

__all__ = ["ConsoleDeps", "create_console_app"]

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'; object-src 'none'")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _console_error(request: web.Request, reply: ErrorReply) -> web.Response:
    """An error page for page routes and for pages that do not exist (a mistyped address), a
    JSON error for everything else (its message in the reader's language: the console's
    scripts show it)."""
    reply = for_reader(request, reply)
    no_page = (reply.error is None and reply.status in (404, 405)
               and request.method in ("GET", "HEAD"))
    if no_page or getattr(request.match_info.handler, "html_errors", False):
        return render(request, "console/error.html", reply.status, user=None,
                      code=reply.status, message=reply.message)
    return json_error(request, reply)


console_errors = error_middleware(
    _console_error, headers={hdrs.CONTENT_SECURITY_POLICY: CSP, hdrs.CACHE_CONTROL: "no-store"},
    answer_all=True)


@web.middleware
async def unknown_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path under the console that no route knows: the console's error page (404) in the
    reader's language (a signed-in user's own choice first), not aiohttp's plain English
    text; a script that asks for JSON gets the JSON error."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        if not isinstance(request.match_info, MatchInfoError):
            raise
        reply = ErrorReply(404, "not_found", "not found")
        accept = request.headers.get(hdrs.ACCEPT, "")
        if "application/json" in accept and "text/html" not in accept:
            return json_error(request, reply)
        user = await signed_in(request)
        if user is not None:
            request[locale.USER_LOCALE] = user.locale
        t = locale.chosen(request)
        return render(request, "console/error.html", 404, user=None, code=404,
                      message=t.gettext(N_("There is no page at this address.")))


# -- sign in and out ----------------------------------------------------------------------------
async def login_form(request: web.Request) -> web.Response:
    target = after_login(request.query.get("next"))
    if await signed_in(request) is not None:
        raise web.HTTPSeeOther(target)
    session = await get_session(request)
    return render(request, "console/login.html", user=None, csrf=csrf_token(session),
                  error=None, next=target)


async def login(request: web.Request) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    security = request.app[SECURITY_KEY]
    session = await get_session(request)
    form = await request.post()
    target = after_login(str(form.get("next", "")))
    try:
        await check_csrf(request, session)
    except PermissionDenied:
        return render(request, "console/login.html", 403, user=None, csrf=csrf_token(session),
                      error="表单已过期，请重新登录 · The form expired; please sign in again.",
                      next=target)
    login_name = str(form.get("login", "")).strip().lower()[:64]
    result = await security.authenticate(request, login_name, str(form.get("password", "")))
    account = result.agent
    if account is None:
        if result.status == 401:
            await audit.write(deps.sessions, actor=f"agent:{login_name or '?'}",
                              action="console.login_failed", object_type="agent",
                              object_id=login_name,
                              detail={"retry_after": result.retry_after}
                              if result.retry_after else None, **audit_origin(request))
        response = render(request, "console/login.html", result.status, user=None,
                          csrf=csrf_token(session),
                          error=result.explain(N_("Wrong login or password."),
                                               locale.chosen(request)),
                          next=target)
        if result.retry_after:
            response.headers[hdrs.RETRY_AFTER] = str(result.retry_after)
        return response
    department = await department_of(deps.sessions, account.id)
    if not has_role(account.role, CONSOLE_ROLE) and department is None:
        await audit.write(deps.sessions, actor=f"agent:{account.login}",
                          action="console.login_refused", object_type="agent",
                          object_id=account.login, detail={"role": account.role},
                          **audit_origin(request))
        return render(request, "console/login.html", 403, user=None, csrf=csrf_token(session),
                      error="主管控制台仅限主管和管理员 · The console is for supervisors "
                            "and admins. Agents use the desk.", next=target)
    session = await new_session(request)  # a fresh session: no fixation
    await start_session(request, session, account)
    await audit.write(deps.sessions, actor=f"agent:{account.login}", action="console.login",
                      object_type="agent", object_id=account.login, **audit_origin(request))
    if not has_role(account.role, CONSOLE_ROLE):  # a department's account: its own page
        target = DEPARTMENT_PAGE
    raise web.HTTPSeeOther(target)


@console_route("agent", post=True)  # a department's account signs out too
async def logout(request: web.Request, user: ConsoleUser) -> web.Response:
    """Every console session of this account ends (their websockets close), everywhere."""
    origin = audit_origin(request)
    await request.app[SECURITY_KEY].end(user.agent_id, app="console", reason="signed_out")
    (await get_session(request)).invalidate()
    await audit.write(request.app[CONSOLE_KEY].sessions, actor=user.actor,
                      action="console.logout", object_type="agent", object_id=user.login,
                      **origin)
    raise web.HTTPSeeOther(f"{PREFIX}/login")


# -- the wallboard ------------------------------------------------------------------------------
def _wallboard_state(deps: ConsoleDeps) -> dict[str, Any] | None:
    return deps.wallboard.state() if deps.wallboard is not None else None


@console_route(page=True)
async def wallboard_page(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    return render_page(request, "console/wallboard.html", user, "wallboard",
                       board=_wallboard_state(deps))


@console_route()
async def wallboard_state(request: web.Request, user: ConsoleUser) -> web.Response:
    board = _wallboard_state(request.app[CONSOLE_KEY])
    if board is None:
        raise InvalidInput(Phrase("no telephony connected: there is no live queue to show"))
    return web.json_response(board)


@console_route()
async def wallboard_socket(request: web.Request, user: ConsoleUser) -> web.StreamResponse:
    """Pushes every change of the wallboard; closes when the session idles out or ends."""
    check_origin(request)
    wallboard = request.app[CONSOLE_KEY].wallboard
    if wallboard is None:
        raise InvalidInput(Phrase("no telephony connected: there is no live queue to show"))
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
    await ws.prepare(request)
    wallboard.attach(ws)
    try:
        await ws.send_json({"type": "wallboard", **wallboard.state()})
        await request.app[SECURITY_KEY].hold(ws, user.session_id or "",
                                             lambda: user.expires_at)
    finally:
        wallboard.detach(ws)
    return ws


# -- the satisfaction dashboard -----------------------------------------------------------------
BAR_WIDTH = 600
"""Bar charts sit two to a row: drawn about as wide as they are shown."""


def _charts(report: reports.SatisfactionReport, t: Translator) -> dict[str, Any]:
    f = report.filter
    _ = t.gettext
    trend = [Point(d.day.isoformat(), d.average, d.count, d.day.strftime("%m-%d"))
             for d in report.trend]

    def groups(stats: Sequence[reports.GroupStat], field: str) -> list[Bar]:
        return [Bar(s.key, s.label if s.key else _(s.label), s.average, s.count,
                    href("/surveys", f.query(**{field: s.key}, page=1)) if s.key else None)
                for s in stats]

    span = {"span": f"{f.since.isoformat()} – {f.until.isoformat()}"}
    return {
        "trend": line_chart(
            trend, chart_id="chart-trend", title=_("Average score by day"),
            desc=_("Average satisfaction score (1-5) per day, %(span)s; gaps are days without "
                   "scores.") % span, width=1240, height=280, gettext=_),
        "distribution": bar_chart(
            [Bar(str(score), _("Score %(score)s") % {"score": score}, count, count,
                 href("/surveys", f.query(min_score=score, max_score=score, page=1)))
             for score, count in sorted(report.distribution.items(), reverse=True)],
            chart_id="chart-distribution", width=BAR_WIDTH, title=_("Score distribution"),
            desc=_("Number of surveys per score, %(span)s.") % span, show_count=False,
            gettext=_),
        "agents": bar_chart(
            groups(report.per_agent, "agent"), chart_id="chart-agents", width=BAR_WIDTH,
            title=_("By agent"),
            desc=_("Average score and number of scores per agent, %(span)s.") % span,
            value_max=5, gettext=_),
        "departments": bar_chart(
            groups(report.per_department, "department"), chart_id="chart-departments",
            width=BAR_WIDTH, title=_("By department"),
            desc=_("Average score and number of scores per handling department, %(span)s.")
            % span, value_max=5, gettext=_),
        "categories": bar_chart(
            groups(report.per_category, "category"), chart_id="chart-categories", width=BAR_WIDTH,
            title=_("By case category"),
            desc=_("Average score and number of scores per case category, %(span)s.") % span,
            value_max=5, gettext=_),
    }


@console_route(page=True)
async def dashboard(request: web.Request, user: ConsoleUser) -> web.Response:
    deps = request.app[CONSOLE_KEY]
    f = report_filter(request)
    report = await reports.satisfaction_report(deps.sessions, f, deps.tz)
    return render_page(request, "console/dashboard.html", user, "dashboard", f=f, report=report,
                       knowledge=await knowledge_share(deps.sessions, f, deps.tz),
                       charts=_charts(report, locale.chosen(request, user.locale)),
                       choices=await reports.filter_choices(deps.sessions),
                       surveys_href=href("/surveys", f.query()),
                       low_href=href("/surveys", f.query(max_score=reports.LOW_SCORE)))


# -- the application ----------------------------------------------------------------------------
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/login", login_form),
    ("POST", "/login", login),
    ("POST", "/logout", logout),
    ("GET", "/", wallboard_page),
    ("GET", "/wallboard/state", wallboard_state),
    ("GET", "/wallboard/ws", wallboard_socket),
    ("GET", "/dashboard", dashboard),
    ("GET", "/service-levels", service_levels_page),
    ("GET", "/service-levels.csv", service_levels_csv),
    ("GET", "/surveys", surveys_page),
    ("GET", "/surveys.csv", surveys_csv),
    ("GET", "/consultations", consultations_page),
    ("GET", "/consultations.csv", consultations_csv),
    ("GET", r"/consultations/{id:\d+}", consultation_page),
    ("GET", r"/consultations/{id:\d+}/recording", get_recording),
    ("GET", r"/surveys/{id:\d+}/comment", get_survey_comment),
    ("GET", r"/residents/{id:\d+}", resident_page),
    ("GET", "/follow-ups", follow_ups_page),
    ("GET", "/follow-ups.csv", follow_ups_csv),
    ("POST", r"/follow-ups/{id:\d+}/assign", assign_follow_up),
    ("POST", r"/follow-ups/{id:\d+}/close", close_follow_up),
    ("GET", "/supervision", supervision_page),
    ("GET", "/department", department_page),
    ("POST", "/department/cases/{number}/{act}", department_act),
    ("POST", r"/supervision/returns/{id:\d+}/ruling", rule_on_return),
    ("POST", r"/supervision/extensions/{id:\d+}/decision", decide_extension),
    ("POST", "/supervision/remind", send_reminders),
    ("GET", "/audit", audit_page),
    ("GET", "/audit.csv", audit_csv),
    *DATA_ROUTES,
]


async def _close_sockets(app: web.Application) -> None:
    wallboard = app[CONSOLE_KEY].wallboard
    if wallboard is not None:
        with contextlib.suppress(Exception):
            await wallboard.close_sockets()


def create_console_app(deps: ConsoleDeps, jinja: jinja2.Environment,
                       security: WebSessions | None = None) -> web.Application:
    """The sub-application mounted at ``PREFIX``; ``security`` is the web app's sessions and
    sign-in (shared with the desk; None: the console's own, started with it)."""
    own = security is None
    security = security or WebSessions(deps.sessions)
    storage = session_storage(deps.session_secret, idle_timeout=deps.idle_timeout,
                              secure=deps.secure_cookies, max_age=security.policy.max_age)
    app = web.Application(middlewares=[console_errors, session_middleware(storage),
                                       unknown_pages],
                          client_max_size=64 * 1024)
    app[SECURITY_KEY] = security
    if own:
        app.cleanup_ctx.append(security.lifecycle)
    app[CONSOLE_KEY] = deps
    app[CONSOLE_JINJA_KEY] = jinja
    app[SESSIONS_KEY] = deps.sessions
    app[IDLE_KEY] = float(deps.idle_timeout)
    if deps.recordings is not None:
        app[STORE_KEY] = deps.recordings
    if deps.survey_comments is not None:
        app[SURVEY_COMMENTS_KEY] = deps.survey_comments
    app.on_shutdown.append(_close_sockets)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    return app
