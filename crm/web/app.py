"""aiohttp application factory for the hotline's web side (agent desk, console, JSON API).

Resources are passed in by the composition root; pages are jinja2 templates with
autoescaping on, because caller names and notes come from outside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE

from crm.categories.time_limits import TimeLimitRules
from crm.i18n.catalogs import DEFAULT_LOCALE
from crm.settings import RepeatRequestSettings, ServiceLevelSettings
from crm.storage.db import SessionFactory
from crm.web import callbacks as callback_routes
from crm.web import knowledge as knowledge_routes
from crm.web import language_switch, locale
from crm.web.api.routes import PREFIX as API_PREFIX
from crm.web.api.routes import create_api_app
from crm.web.console.app import ConsoleDeps, create_console_app
from crm.web.console.auth import PREFIX as CONSOLE_PREFIX
from crm.web.desk import PREFIX as DESK_PREFIX
from crm.web.desk import DeskDeps, create_desk_app
from crm.web.session import SessionPolicy, WebSessions

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
"""Shipped inside this package (hotline.assets lists them for the wheel's checks)."""

SESSIONS_KEY = web.AppKey("sessions", SessionFactory)
HEALTH_KEY = web.AppKey("health", Callable)
METRICS_KEY = web.AppKey("metrics", Callable)
JINJA_KEY = web.AppKey("jinja", jinja2.Environment)
WEB_SESSIONS_KEY = web.AppKey("app_web_sessions", WebSessions)


@dataclass(frozen=True)
class HealthReport:
    ami: str
    audiosocket_port: int | None
    active_calls: int
    consultations_written: int
    speech: dict = field(default_factory=dict)
    calls_refused_overload: int = 0
    """Calls handed to the agent queue because the IVR was serving ``max_calls``."""
    audiosocket_refused: dict = field(default_factory=dict)
    """AudioSocket connections refused, by reason (peer not allowed, unannounced id, ...)."""
    pending_writes: dict = field(default_factory=dict)
    """Writes waiting in durable journals for the database, by kind."""
    role: str = "all"
    """The process's role (hotline serve --role): a web node serves no AudioSocket."""
    reminders: dict = field(default_factory=dict)
    """The reminder timer's last pass (time, reminders sent, error), where it runs."""

    @property
    def ok(self) -> bool:
        return self.ami == "logged_in" and (self.audiosocket_port is not None
                                            or self.role == "web")


async def healthz(request: web.Request) -> web.Response:
    report: HealthReport = request.app[HEALTH_KEY]()
    body = {"ok": report.ok, **asdict(report)}
    return web.json_response(body, status=200 if report.ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text format. Open like /healthz: counts and states only, never a number,
    a name or a case (see hotline/metrics.py)."""
    return web.Response(body=request.app[METRICS_KEY](),
                        headers={"Content-Type": METRICS_CONTENT_TYPE})


async def home(request: web.Request) -> web.Response:
    report: HealthReport = request.app[HEALTH_KEY]()
    t = locale.chosen(request)
    html = locale.render(request.app[JINJA_KEY], "home.html", t, health=report)
    response = web.Response(text=html, content_type="text/html")
    locale.remember(response, request, None)
    return response


@web.middleware
async def security_headers(request: web.Request, handler):  # type: ignore[no-untyped-def]
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'")
    return response


def create_app(sessions: SessionFactory, health: Callable[[], HealthReport], *,
               api: bool = True, case_numbering_tz: tzinfo = UTC,
               desk: DeskDeps | None = None,
               console: ConsoleDeps | None = None,
               session_policy: SessionPolicy | None = None,
               report_tz: tzinfo = UTC,
               service_levels: ServiceLevelSettings | None = None,
               metrics_text: Callable[[], bytes] | None = None,
               time_limits: TimeLimitRules | None = None,
               repeat_requests: RepeatRequestSettings | None = None,
               default_locale: str = DEFAULT_LOCALE) -> web.Application:
    """The web side. ``api`` mounts the open JSON API under /api; ``case_numbering_tz`` is
    the time zone whose calendar day case numbers carry (the hotline's local zone); ``desk``
    mounts the agent desk under /desk and ``console`` the supervisor console under /console
    (their scripts and styles are served from /static). The desk and the console share one
    :class:`WebSessions` under ``session_policy`` (sessions' absolute lifetime, sign-in
    throttling, the argon2 threads), owned by the app: started with it, its threads stopped
    at cleanup. ``report_tz`` is the zone whose days and hours the API's service-level figures
    are counted in, with the thresholds and targets of ``service_levels``. ``metrics_text``
    serves /metrics (Prometheus' text format). ``time_limits``: how the API counts a new
    case's deadline ([time_limits]; None: on the clock); ``repeat_requests`` what it offers
    as the same matter; ``default_locale`` the pages' language for users who chose none
    ([web] locale)."""
    app = web.Application(middlewares=[security_headers])
    app[SESSIONS_KEY] = sessions
    app[HEALTH_KEY] = health
    app[JINJA_KEY] = locale.environment(jinja2.FileSystemLoader(TEMPLATES))
    app[locale.DEFAULT_LOCALE_KEY] = default_locale
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", home)
    if metrics_text is not None:
        app[METRICS_KEY] = metrics_text
        app.router.add_get("/metrics", metrics)
    if api:
        app.add_subapp(API_PREFIX, create_api_app(
            sessions, numbering_tz=case_numbering_tz, report_tz=report_tz,
            service_levels=service_levels or ServiceLevelSettings(),
            time_limits=time_limits, repeat_requests=repeat_requests))
    if desk is not None or console is not None:
        app.router.add_static("/static", STATIC, follow_symlinks=False)
        security = WebSessions(sessions, session_policy)
        app[WEB_SESSIONS_KEY] = security
        app.cleanup_ctx.append(security.lifecycle)
    if desk is not None:
        app.router.add_get(DESK_PREFIX, _to_desk)
        desk_app = create_desk_app(desk, app[JINJA_KEY], security)
        _add_routes(desk_app, callback_routes.DESK_ROUTES)
        _add_routes(desk_app, knowledge_routes.DESK_ROUTES)
        _add_routes(desk_app, language_switch.DESK_ROUTES)
        app.add_subapp(DESK_PREFIX, desk_app)
    if console is not None:
        app.router.add_get(CONSOLE_PREFIX, _to_console)
        console_app = create_console_app(console, app[JINJA_KEY], security)
        _add_routes(console_app, callback_routes.CONSOLE_ROUTES)
        _add_routes(console_app, knowledge_routes.CONSOLE_ROUTES)
        _add_routes(console_app, language_switch.CONSOLE_ROUTES)
        app.add_subapp(CONSOLE_PREFIX, console_app)
    return app


def _add_routes(app: web.Application, routes: list[tuple[str, str, Any]]) -> None:
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)


async def _to_desk(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"{DESK_PREFIX}/")


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther(f"{CONSOLE_PREFIX}/")
