"""What the agent desk and the supervisor console share about browser sessions: server-side
sessions behind an encrypted cookie, throttled sign-in, the CSRF token, the same-site checks,
and websockets that last as long as the session.

Each application keeps its own cookie (name, path and key): signing in at one does not sign
anyone in at the other. The cookie is aiohttp-session's EncryptedCookieStorage (Fernet:
encrypted and authenticated) and holds the CSRF token and the secret of a server-side session
(crm.agents.sessions): every request is checked against that row, so signing out, a new
password or role, or a disabled account ends the session everywhere, and :class:`WebSessions`
closes its open websockets at once (in this process; other processes' revocations are found by
a check of the open sockets every ``check_interval`` seconds). Sessions end after the idle
timeout and at the latest ``max_age`` after sign-in.

Sign-in is throttled per account and per source address (crm.agents.throttle, in the
database) and argon2 runs on threads of its own (crm.agents.auth.PasswordWork). POSTs carry the
session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``) and, when the browser
sends one, this site's Origin; websockets check Origin.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, hdrs, web
from aiohttp_session import Session
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from crm.agents import accounts as agents
from crm.agents import sessions as browser_sessions
from crm.agents.auth import PasswordWork, PasswordWorkBusy
from crm.agents.sessions import LiveSession, Revoked
from crm.agents.throttle import SignInThrottle, ThrottlePolicy
from crm.agents.view import AgentView
from crm.errors import PermissionDenied
from crm.i18n.catalogs import Translator
from crm.i18n.phrases import N_, Phrase
from crm.settings import WebSettings
from crm.storage.db import SessionFactory

log = logging.getLogger(__name__)

CSRF_FIELD = "csrf"
"""The form field, and the session key, of the CSRF token."""
CSRF_HEADER = "X-CSRF-Token"
SESSION_EXPIRED = 4401
"""The websocket close code when the session behind it has expired or was ended: the page
signs in again."""
SECRET_FIELD = "sid"
"""The cookie's key of the server-side session's secret."""
SEEN_FIELD = "seen"
WEB_SESSION_ID = web.RequestKey("web_session_id", str)
"""The public id of the request's signed-in session (for the audit log)."""
PURGE_INTERVAL = 3600.0
"""Seconds between deletions of old sign-in failures and long-ended sessions."""


def cookie_storage(secret: str, *, purpose: str, cookie_name: str, path: str, max_age: float,
                   secure: bool) -> EncryptedCookieStorage:
    """Fernet keyed from the web session secret and ``purpose`` (one application's cookie does
    not open in another's); a strict same-site, script-proof cookie under ``path``."""
    key = base64.urlsafe_b64encode(hashlib.sha256(f"{purpose}:{secret}".encode()).digest())
    return EncryptedCookieStorage(Fernet(key), cookie_name=cookie_name, max_age=int(max_age),
                                  path=path, httponly=True, samesite="Strict", secure=secure)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(session: Session) -> str:
    """The session's CSRF token, made on first use."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = new_csrf_token()
    return str(session[CSRF_FIELD])


def check_origin(request: web.Request) -> None:
    """Browsers send Origin on POSTs and websockets: it must be this site."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise PermissionDenied(Phrase("request from another site refused"))


async def check_csrf(request: web.Request, session: Session, *,
                     reload: str = N_("the page")) -> None:
    """This site's Origin (when sent) and the session's CSRF token, from the header or a
    posted form; ``reload`` is what the error tells the user to reload (a message id)."""
    check_origin(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        sent = str((await request.post()).get(CSRF_FIELD, ""))
    expected = session.get(CSRF_FIELD)
    if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise PermissionDenied(Phrase("missing or wrong CSRF token; reload {what}",
                                      {"what": Phrase(reload)}))


async def hold_until_expired(ws: web.WebSocketResponse,
                             expires_at: Callable[[], float | None]) -> None:
    """Keep a prepared websocket open, ignoring what the page sends (its own pings), until the
    page closes it, ``expires_at()`` (asked again after every wait) says the session is gone
    (None) or the time it gave has passed: then close it with :data:`SESSION_EXPIRED`."""
    while not ws.closed:
        deadline = expires_at()
        if deadline is None:
            break
        remaining = deadline - time.time()
        if remaining <= 0:
            await ws.close(code=SESSION_EXPIRED, message=b"session expired")
            break
        try:
            msg = await ws.receive(timeout=min(remaining, 3600.0))
        except TimeoutError:
            continue
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break


# -- where a request comes from ----------------------------------------------------------------
def client_address(request: web.Request) -> str | None:
    """The client's address as this server saw it (behind a reverse proxy: the proxy's, unless
    the proxy's forwarded headers are applied before this app)."""
    return request.remote


def audit_origin(request: web.Request) -> dict[str, str | None]:
    """``source`` and ``web_session`` for crm.audit.log.record/write: the client's address and the
    public id of the desk or console session the request was made in (None for the API)."""
    return {"source": client_address(request), "web_session": request.get(WEB_SESSION_ID)}


# -- policy ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SessionPolicy:
    max_age: float = 12 * 3600.0
    """The absolute lifetime of a desk or console session, however active it is."""
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    hash_workers: int = 1
    """Threads that run argon2 (sign-in, password changes)."""
    hash_max_waiting: int = 16
    """Password checks that may wait for a thread; more are answered "busy" (503)."""
    check_interval: float = 5.0
    """Seconds between checks of the open websockets' sessions against the database (for
    sessions ended by another process, e.g. ``hotline agents disable``)."""

    @classmethod
    def from_settings(cls, w: WebSettings) -> SessionPolicy:
        return cls(max_age=w.session_max_age,
                   throttle=ThrottlePolicy(
                       account_free_failures=w.sign_in_account_failures,
                       address_free_failures=w.sign_in_address_failures,
                       base_delay=w.sign_in_base_delay, max_delay=w.sign_in_max_delay,
                       forget_after=w.sign_in_forget_after),
                   hash_workers=w.password_hash_threads,
                   check_interval=w.session_check_interval)


@dataclass(frozen=True)
class SignInResult:
    agent: AgentView | None
    status: int
    """200 signed in, 401 wrong login or password, 429 throttled, 503 busy."""
    phrase: Phrase | None = None
    """Why, for the person signing in (None: only the page's own wording for a wrong
    password); ``phrase.render()`` is its English."""
    retry_after: int | None = None
    """Seconds (a Retry-After header) when the next attempt must wait."""

    def explain(self, wrong: str, t: Translator | None = None) -> str:
        """What the sign-in page says, in ``t``'s language (English without ``t``); ``wrong``
        is the page's text for a wrong login or password (a message id)."""
        zh = t is not None and t.locale.startswith("zh")
        parts = [t.gettext(wrong) if t else wrong] if self.status == 401 else []
        if self.phrase is not None:
            text = t.phrase(self.phrase) if t else self.phrase.render()
            parts.append(text if text.endswith(("。", ".")) else
                         f"{text}。" if zh else f"{text[0].upper()}{text[1:]}.")
        return ("" if zh else " ").join(parts)


def _try_again(seconds: int) -> Phrase:
    return Phrase("Too many failed sign-ins, try again in {seconds} s.", {"seconds": seconds})


# -- websockets of sessions --------------------------------------------------------------------
class SocketRegistry:
    """The open websockets of each session, so ending a session closes them."""

    def __init__(self) -> None:
        self._by_session: dict[str, set[web.WebSocketResponse]] = {}

    def session_ids(self) -> list[str]:
        return list(self._by_session)

    def count(self, session_id: str | None = None) -> int:
        if session_id is not None:
            return len(self._by_session.get(session_id, ()))
        return sum(len(s) for s in self._by_session.values())

    @contextlib.contextmanager
    def track(self, session_id: str, ws: web.WebSocketResponse):  # type: ignore[no-untyped-def]
        self._by_session.setdefault(session_id, set()).add(ws)
        try:
            yield
        finally:
            held = self._by_session.get(session_id)
            if held is not None:
                held.discard(ws)
                if not held:
                    del self._by_session[session_id]

    async def close(self, session_ids: Iterable[str]) -> int:
        """Close the sockets of these sessions with :data:`SESSION_EXPIRED`; how many."""
        closed = 0
        for session_id in set(session_ids):
            for ws in list(self._by_session.get(session_id, ())):
                with contextlib.suppress(Exception):
                    await ws.close(code=SESSION_EXPIRED, message=b"session ended")
                closed += 1
        return closed


RevocationHook = Callable[[Revoked], Awaitable[None]]


class WebSessions:
    """The desk's and console's sessions in one web process: throttled sign-in with argon2 on
    threads of its own, server-side sessions, and the websockets they hold. Made by
    crm.web.app.create_app; :meth:`lifecycle` starts and stops it with the app."""

    def __init__(self, sessions: SessionFactory, policy: SessionPolicy | None = None) -> None:
        self._sessions = sessions
        self.policy = policy or SessionPolicy()
        self.throttle = SignInThrottle(sessions, self.policy.throttle)
        self.work = PasswordWork(workers=self.policy.hash_workers,
                                 max_waiting=self.policy.hash_max_waiting)
        self.sockets = SocketRegistry()
        self._hooks: dict[str, list[RevocationHook]] = {}
        self._checker: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------------
    def on_revoked(self, app: str, hook: RevocationHook) -> None:
        """Also call ``hook`` for each ended session of ``app`` (e.g. the desk takes the
        phone out of the queue)."""
        self._hooks.setdefault(app, []).append(hook)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        browser_sessions.add_listener(self._revoked)
        self._checker = asyncio.create_task(self._check_loop(), name="web-session-check")

    async def close(self) -> None:
        browser_sessions.remove_listener(self._revoked)
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        self.work.close()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """For ``app.cleanup_ctx``."""
        await self.start()
        yield
        await self.close()

    async def _revoked(self, revoked: list[Revoked]) -> None:
        """Sessions ended in this process (or found ended): close their sockets now."""
        await self.sockets.close(r.session_id for r in revoked)
        for r in revoked:
            for hook in self._hooks.get(r.app, ()):
                try:
                    await hook(r)
                except Exception:
                    log.exception("ending %s's %s session: a hook failed", r.login, r.app)

    async def check_open_sockets(self) -> list[Revoked]:
        """Close the sockets of sessions that ended elsewhere (another process revoked them,
        or they passed their absolute end)."""
        gone = await browser_sessions.not_live(self._sessions, self.sockets.session_ids())
        if gone:
            log.info("closing the websockets of %d ended session(s)", len(gone))
            await self._revoked(gone)
        return gone

    async def _check_loop(self) -> None:
        last_purge = 0.0
        while True:
            await asyncio.sleep(self.policy.check_interval)
            try:
                await self.check_open_sockets()
                if time.monotonic() - last_purge > PURGE_INTERVAL:
                    last_purge = time.monotonic()
                    await self.throttle.forget_old()
                    await browser_sessions.purge_ended(self._sessions)
            except Exception:
                log.exception("checking the open websockets' sessions failed")

    # -- sign-in ---------------------------------------------------------------------------
    async def authenticate(self, request: web.Request, login: str,
                           password: str) -> SignInResult:
        """Check a sign-in, throttled per account and per source address."""
        source = client_address(request)
        attempt = await self.throttle.attempt(login, source)
        if not attempt.allowed:
            log.warning("sign-in as %r from %s refused: %s locked for %d s", login, source,
                        attempt.locked, attempt.retry_after_seconds)
            return SignInResult(None, 429, _try_again(attempt.retry_after_seconds),
                                attempt.retry_after_seconds)
        try:
            agent = await agents.authenticate(self._sessions, login, password, work=self.work)
        except PasswordWorkBusy:
            await self.throttle.released(attempt)
            return SignInResult(None, 503, Phrase("Sign-in is busy; try again in a few seconds."),
                                5)
        if agent is None:
            wait = await self.throttle.retry_after(attempt)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                return SignInResult(None, 401, _try_again(seconds), seconds)
            return SignInResult(None, 401)
        await self.throttle.succeeded(attempt)
        return SignInResult(agent, 200)

    async def begin(self, request: web.Request, cookie: Session, *, app: str,
                    agent: AgentView, now: float) -> LiveSession:
        """A new server-side session for ``agent``, its secret in ``cookie`` (a fresh one)."""
        secret, live = await browser_sessions.open_session(
            self._sessions, app=app, agent=agent, max_age=self.policy.max_age,
            source=client_address(request), user_agent=request.headers.get(hdrs.USER_AGENT),
            now=now)
        cookie.update({SECRET_FIELD: secret, SEEN_FIELD: now, CSRF_FIELD: new_csrf_token()})
        request[WEB_SESSION_ID] = live.id
        return live

    async def current(self, request: web.Request, cookie: Session, *, app: str,
                      idle_timeout: float, now: float,
                      refresh_after: float = 60.0) -> LiveSession | None:
        """The live session behind the cookie, or None (the cookie is then cleared)."""
        secret = cookie.get(SECRET_FIELD)
        if not isinstance(secret, str):
            return None
        found = await browser_sessions.check(self._sessions, secret, app=app,
                                             idle_timeout=idle_timeout, now=now,
                                             refresh_after=refresh_after)
        if found is None:
            cookie.invalidate()
            return None
        live, refreshed = found
        if refreshed:
            cookie[SEEN_FIELD] = now  # re-issues the cookie: its lifetime follows use
        request[WEB_SESSION_ID] = live.id
        return live

    async def end(self, agent_id: int, *, app: str | None,
                  reason: str = "signed_out") -> list[Revoked]:
        """End the account's sessions (of ``app``, or all) and close their websockets."""
        return await browser_sessions.revoke_agent(self._sessions, agent_id, reason, app=app)

    async def hold(self, ws: web.WebSocketResponse, session_id: str,
                   expires_at: Callable[[], float | None]) -> None:
        """:func:`hold_until_expired`, and closed at once when the session ends."""
        with self.sockets.track(session_id, ws):
            await hold_until_expired(ws, expires_at)


SECURITY_KEY = web.AppKey("web_sessions", WebSessions)
