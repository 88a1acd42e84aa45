"""Who may use the agent desk: its dependencies, its session cookie and the check every
route makes (a signed-in, live session; the CSRF token on POSTs). The routes are in
crm.web.desk_page and crm.web.desk_calls; crm.web.desk builds the application.

Sessions are crm.web.session's server-side sessions behind an encrypted cookie of the
desk's own (name, path and key): refreshed while the agent is active, refused after
``idle_timeout`` seconds without a request and at the latest ``max_age`` after sign-in, and
ended at once (websockets included) by signing out, a new password or role, or a disabled
account.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any

import jinja2
from aiohttp import web
from aiohttp_session import Session, get_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from crm.agents.view import AgentView
from crm.callbacks.dialing import CallbackActions
from crm.categories.time_limits import TimeLimitRules
from crm.errors import Unauthenticated
from crm.i18n.phrases import Phrase
from crm.live.desk_hub import AgentDesk, DeskHub
from crm.settings import RepeatRequestSettings
from crm.storage.db import SessionFactory
from crm.telephony.queue import AgentQueue
from crm.web import locale
from crm.web.session import SECURITY_KEY, check_csrf, cookie_storage

PREFIX = "/desk"
COOKIE_NAME = "hotline_desk"
SEEN_REFRESH = 60.0
"""Seconds between re-issues of the session cookie while the agent is active."""
SIGNED_OUT = "signed_out"


@dataclass
class DeskDeps:
    """What the desk needs, built by the composition root."""

    sessions: SessionFactory
    hub: DeskHub
    queue: AgentQueue | None
    """None: no telephony (the desk still works for cases and consultations)."""
    session_secret: str
    idle_timeout: float = 8 * 3600
    numbering_tz: tzinfo = UTC
    secure_cookies: bool = False
    callbacks: CallbackActions | None = None
    """Callback requests (crm.web.callbacks): the scheduler that dials them."""
    time_limits: TimeLimitRules | None = None
    """How a category's limit becomes a deadline ([time_limits]); None: on the clock."""
    repeats: RepeatRequestSettings = field(default_factory=RepeatRequestSettings)
    """Which open cases a new one is offered to join ([repeat_requests])."""


DESK_KEY = web.AppKey("desk", DeskDeps)
DESK_JINJA_KEY = web.AppKey("desk_jinja", jinja2.Environment)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AgentHandler = Callable[[web.Request, AgentDesk], Awaitable[web.StreamResponse]]


def session_storage(secret: str, *, idle_timeout: float, secure: bool) -> EncryptedCookieStorage:
    """Its TTL is the idle timeout (the cookie is re-issued while the agent is active)."""
    return cookie_storage(secret, purpose="hotline-desk", cookie_name=COOKIE_NAME, path=PREFIX,
                          max_age=idle_timeout, secure=secure)


# -- sessions ----------------------------------------------------------------------------------
async def signed_in(request: web.Request) -> tuple[Session, AgentView] | None:
    """The session's agent, if signed in, active and the session live (not ended, not idle
    too long, not past its absolute end); refreshes it."""
    deps = request.app[DESK_KEY]
    session = await get_session(request)
    live = await request.app[SECURITY_KEY].current(
        request, session, app="desk", idle_timeout=deps.idle_timeout, now=time.time(),
        refresh_after=SEEN_REFRESH)
    if live is None:
        return None
    agent = live.agent
    ends = live.ends_at(deps.idle_timeout)
    desk = deps.hub.desk(agent.login)
    if desk is None:  # e.g. the service restarted under a live session
        deps.hub.sign_in(agent, expires_at=ends)
    else:
        deps.hub.touch(agent.login, ends)
    return session, agent


def agent_required(*, page: bool = False, post: bool = False) -> Callable[[AgentHandler],
                                                                           Handler]:
    """Run the handler for a signed-in agent (with a CSRF check for POSTs). Pages redirect
    to the sign-in form; everything else answers 401."""

    def wrap(handler: AgentHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            found = await signed_in(request)
            if found is None:
                if page:
                    raise web.HTTPSeeOther(f"{PREFIX}/login")
                raise Unauthenticated(Phrase("sign in at the desk first"))
            session, agent = found
            request[locale.USER_LOCALE] = agent.locale
            if post:
                await check_csrf(request, session, reload="the desk")
            desk = request.app[DESK_KEY].hub.desk(agent.login)
            if desk is None:  # signed out by idle expiry a moment ago
                raise Unauthenticated(Phrase("sign in at the desk first"))
            return await handler(request, desk)

        return checked

    return wrap


def render(request: web.Request, template: str, status: int = 200,
           **context: Any) -> web.Response:
    """A desk page in the language of the signed-in agent or the request
    (crm.web.locale)."""
    t = locale.chosen(request)
    html = locale.render(request.app[DESK_JINJA_KEY], template, t, **context)
    response = web.Response(text=html, content_type="text/html", status=status)
    locale.remember(response, request, None)
    return response

