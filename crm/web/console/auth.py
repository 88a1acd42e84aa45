"""Who may use the supervisor console: sign-in, sessions, roles and CSRF.

The console has its own session cookie (path /console), separate from the agent desk's:
signing in here does not put anyone's phone in the queue. The server-side sessions, throttled
sign-in, the encrypted cookie, the CSRF token and the Origin check are crm.web.session's,
shared with the desk. A session ends after ``idle_timeout`` seconds without a request, at the
latest ``max_age`` (web.session_max_age) after sign-in, and at once when it is ended: signing
out, a new password or role, a disabled account (its websockets close too). The session and
its account are checked on every request.

Every route states the least role it needs with :func:`console_route`: supervisor for the
console, admin for the audit log. Pages send whoever is not signed in to the sign-in form;
everything else answers 401. A role too low answers 403. POSTs need the session's CSRF token
(form field ``csrf`` or header ``X-CSRF-Token``) and, when the browser sends one, this site's
Origin.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import Session, get_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from crm.agents.auth import has_role
from crm.agents.sessions import LiveSession
from crm.agents.view import AgentView
from crm.errors import PermissionDenied, Unauthenticated
from crm.i18n.phrases import Label, Phrase
from crm.storage.db import SessionFactory
from crm.web import locale
from crm.web.session import SECURITY_KEY, check_csrf, cookie_storage, csrf_token

PREFIX = "/console"
COOKIE_NAME = "hotline_console"
CONSOLE_ROLE = "supervisor"
MAX_SESSION_AGE = 12 * 3600.0
"""The default absolute lifetime (the web app's SessionPolicy.max_age is the one in force)."""
SEEN_REFRESH = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ConsoleUser:
    login: str
    display_name: str
    role: str
    csrf: str
    expires_at: float
    """time.time() when the session idles out unless used again (or reaches its end)."""
    session_id: str | None = None
    """The public id of the server-side session (what the audit log records)."""
    agent_id: int = 0
    locale: str | None = None
    """The language they chose for their pages (None: the hotline's default)."""

    @property
    def actor(self) -> str:
        return f"agent:{self.login}"

    @property
    def is_admin(self) -> bool:
        return has_role(self.role, "admin")


UserHandler = Callable[[web.Request, ConsoleUser], Awaitable[web.StreamResponse]]
SESSIONS_KEY = web.AppKey("console_sessions", SessionFactory)
IDLE_KEY = web.AppKey("console_idle_timeout", float)


def session_storage(secret: str, *, idle_timeout: float, secure: bool,
                    max_age: float = MAX_SESSION_AGE) -> EncryptedCookieStorage:
    return cookie_storage(secret, purpose="hotline-console", cookie_name=COOKIE_NAME,
                          path=PREFIX, max_age=min(idle_timeout, max_age), secure=secure)


async def signed_in(request: web.Request) -> ConsoleUser | None:
    """The session's account if signed in, its session live (not ended, not idle too long,
    not past its absolute end) and the account active; refreshes it."""
    session = await get_session(request)
    idle = request.app[IDLE_KEY]
    live = await request.app[SECURITY_KEY].current(
        request, session, app="console", idle_timeout=idle, now=time.time(),
        refresh_after=SEEN_REFRESH)
    if live is None:
        return None
    account = live.agent
    return ConsoleUser(account.login, account.display_name, account.role, csrf_token(session),
                       live.ends_at(idle), live.id, account.id, account.locale)


def after_login(target: str | None) -> str:
    """Where to go after signing in: the console page asked for, never another site."""
    if (target and target.startswith(f"{PREFIX}/") and "//" not in target
            and "\\" not in target and not target.startswith(f"{PREFIX}/login")):
        return target
    return f"{PREFIX}/"


async def start_session(request: web.Request, session: Session,
                        account: AgentView) -> LiveSession:
    """A server-side console session for ``account``, its secret in ``session`` (a fresh
    cookie session)."""
    return await request.app[SECURITY_KEY].begin(request, session, app="console",
                                                 agent=account, now=time.time())


def console_route(minimum: str = CONSOLE_ROLE, *, page: bool = False,
                  post: bool = False) -> Callable[[UserHandler], Handler]:
    """Run the handler for a signed-in account with at least the ``minimum`` role (and the
    CSRF check for POSTs). Whether its errors are shown as a page is kept on the handler
    (``html_errors``, read by the console's error middleware)."""

    def wrap(handler: UserHandler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            user = await signed_in(request)
            if user is None:
                if page and request.method in ("GET", "HEAD"):
                    raise web.HTTPSeeOther(f"{PREFIX}/login?{urlencode({'next': request.path_qs})}")
                raise Unauthenticated(Phrase("sign in to the console first"))
            request[locale.USER_LOCALE] = user.locale
            if not has_role(user.role, minimum):
                raise PermissionDenied(Phrase("this needs the {role} role or above",
                                              {"role": Label("role", minimum)}))
            if post:
                await check_csrf(request, await get_session(request))
            return await handler(request, user)

        checked.html_errors = page  # type: ignore[attr-defined]
        return checked

    return wrap
