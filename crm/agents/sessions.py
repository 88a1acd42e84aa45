"""Server-side sessions of the agent desk and the supervisor console.

The browser's cookie carries a random secret; the ``web_sessions`` row keeps only its SHA-256,
with who signed in (and their role then), when, from where, when it was last used and when it
ends whatever happens (the absolute lifetime). Every request is checked against the row, so a
session ends for every web process at once when it is revoked: at sign-out, when the account's
password or role changes or it is disabled (crm.agents.accounts does those in the same
transaction as the change). Each row also has a public random ``id``, which the audit log
records and which is not enough to open the session.

Revocations made in this process are announced to listeners (the web app's websocket
registry closes the sockets of those sessions at once); revocations made by another process
(the command line) are found by the registry's periodic check of the open sockets.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from crm.agents.view import AgentView, agent_view
from crm.storage.db import SessionFactory
from crm.storage.models import Agent, WebSession, utcnow

log = logging.getLogger(__name__)

APPS = ("desk", "console")
USER_AGENT_LENGTH = 256


@dataclass(frozen=True)
class Revoked:
    """Sessions that just ended, for listeners."""

    session_id: str
    app: str
    login: str
    reason: str


Listener = Callable[[list[Revoked]], Awaitable[None]]
_listeners: dict[Listener, asyncio.AbstractEventLoop] = {}
_elsewhere: set[concurrent.futures.Future[None]] = set()
"""Announcements handed to listeners on other event loops, until they are done."""


def add_listener(listener: Listener) -> None:
    """Call ``listener`` (on the running event loop, where it was added) with every batch of
    sessions revoked in this process, after commit."""
    _listeners[listener] = asyncio.get_running_loop()


def remove_listener(listener: Listener) -> None:
    _listeners.pop(listener, None)


async def announce(revoked: list[Revoked]) -> None:
    """Tell this process's listeners; call after the revocation committed. Listeners on this
    loop are awaited; those on another loop (a web app serving from another thread) are
    handed the news there."""
    if not revoked:
        return
    here = asyncio.get_running_loop()
    for listener, loop in list(_listeners.items()):
        if loop is here:
            try:
                await listener(revoked)
            except Exception:
                log.exception("a revocation listener failed")
        elif not loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(listener(revoked), loop)
            _elsewhere.add(future)
            future.add_done_callback(_elsewhere.discard)


@dataclass(frozen=True)
class LiveSession:
    id: str
    app: str
    agent: AgentView
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    source: str | None
    user_agent: str | None

    def ends_at(self, idle_timeout: float) -> float:
        """time.time() at which it ends unless used again: idle, or the absolute end."""
        idle_end = self.last_seen_at + timedelta(seconds=idle_timeout)
        return min(idle_end, self.expires_at).timestamp()


@dataclass(frozen=True)
class SessionRow:
    """What ``hotline agents sessions`` lists (no secret)."""

    id: str
    app: str
    login: str
    role: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    source: str | None
    user_agent: str | None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _at(now: float | datetime | None) -> datetime:
    if now is None:
        return utcnow()
    if isinstance(now, datetime):
        return now
    return datetime.fromtimestamp(now, UTC)


async def open_session(sessions: SessionFactory, *, app: str, agent: AgentView,
                       max_age: float, source: str | None, user_agent: str | None,
                       now: float | datetime | None = None) -> tuple[str, LiveSession]:
    """A new session for a signed-in account: (the cookie's secret, the session)."""
    if app not in APPS:
        raise ValueError(f"unknown application {app!r}")
    at = _at(now)
    secret = secrets.token_urlsafe(32)
    row = WebSession(id=secrets.token_urlsafe(12), token_hash=digest(secret), app=app,
                     agent_id=agent.id, role=agent.role, created_at=at, last_seen_at=at,
                     expires_at=at + timedelta(seconds=max_age),
                     source_address=source[:64] if source else None,
                     user_agent=user_agent[:USER_AGENT_LENGTH] if user_agent else None)
    async with sessions() as session, session.begin():
        session.add(row)
    return secret, _live(row, agent)


def _live(row: WebSession, agent: AgentView) -> LiveSession:
    return LiveSession(row.id, row.app, agent, row.role, row.created_at, row.last_seen_at,
                       row.expires_at, row.source_address, row.user_agent)


async def check(sessions: SessionFactory, secret: str, *, app: str, idle_timeout: float,
                now: float | datetime | None = None,
                refresh_after: float = 60.0) -> tuple[LiveSession, bool] | None:
    """The live session this cookie secret opens, and whether its last use was just moved
    forward (at most every ``refresh_after`` seconds); None when unknown, of another app,
    revoked, idle longer than ``idle_timeout``, past its absolute end, or its account is
    disabled or has another role now (those revoke all of the account's sessions)."""
    if not secret or len(secret) > 128:
        return None
    at = _at(now)
    async with sessions() as session:
        found = (await session.execute(
            select(WebSession, Agent).join(Agent, Agent.id == WebSession.agent_id)
            .where(WebSession.token_hash == digest(secret), WebSession.app == app))).first()
    if found is None:
        return None
    row, agent = found
    if row.revoked_at is not None or at >= row.expires_at:
        return None
    if at - row.last_seen_at > timedelta(seconds=idle_timeout):
        return None
    if not agent.active or agent.role != row.role:
        reason = "disabled" if not agent.active else "role_changed"
        await revoke_agent(sessions, agent.id, reason)
        return None
    refreshed = at - row.last_seen_at > timedelta(seconds=refresh_after)
    if refreshed:
        async with sessions() as session, session.begin():
            await session.execute(update(WebSession).where(WebSession.id == row.id)
                                  .values(last_seen_at=at))
        row.last_seen_at = at
    return _live(row, agent_view(agent)), refreshed


async def revoke_in(session: AsyncSession, agent_id: int, reason: str, *,
                    app: str | None = None,
                    now: datetime | None = None) -> list[Revoked]:
    """Revoke the account's live sessions (of one app, or all) inside the caller's
    transaction; announce the result after commit."""
    at = now or utcnow()
    query = (select(WebSession.id, WebSession.app, Agent.login)
             .join(Agent, Agent.id == WebSession.agent_id)
             .where(WebSession.agent_id == agent_id, WebSession.revoked_at.is_(None),
                    WebSession.expires_at > at))
    if app is not None:
        query = query.where(WebSession.app == app)
    rows = (await session.execute(query)).all()
    if rows:
        await session.execute(update(WebSession)
                              .where(WebSession.id.in_([r.id for r in rows]))
                              .values(revoked_at=at, revoked_reason=reason[:32]))
    return [Revoked(r.id, r.app, r.login, reason) for r in rows]


async def revoke_agent(sessions: SessionFactory, agent_id: int, reason: str, *,
                       app: str | None = None) -> list[Revoked]:
    """Revoke and announce; the sessions that ended."""
    async with sessions() as session, session.begin():
        revoked = await revoke_in(session, agent_id, reason, app=app)
    if revoked:
        log.info("%s: %d %s session(s) ended (%s)", revoked[0].login, len(revoked),
                 app or "web", reason)
    await announce(revoked)
    return revoked


async def not_live(sessions: SessionFactory, session_ids: Iterable[str], *,
                   now: float | datetime | None = None) -> list[Revoked]:
    """Which of these sessions are no longer live (revoked, past their absolute end, their
    account disabled or of another role): the periodic check of open websockets."""
    ids = list(session_ids)
    if not ids:
        return []
    at = _at(now)
    async with sessions() as session:
        rows = (await session.execute(
            select(WebSession.id, WebSession.app, WebSession.revoked_reason, Agent.login)
            .join(Agent, Agent.id == WebSession.agent_id)
            .where(WebSession.id.in_(ids),
                   or_(WebSession.revoked_at.is_not(None), WebSession.expires_at <= at,
                       Agent.active.is_(False), Agent.role != WebSession.role)))).all()
        known = set((await session.scalars(select(WebSession.id)
                                           .where(WebSession.id.in_(ids)))).all())
    gone = [Revoked(r.id, r.app, r.login, r.revoked_reason or "ended") for r in rows]
    gone += [Revoked(i, "", "", "unknown") for i in ids if i not in known]
    return gone


async def live_logins(sessions: SessionFactory, app: str, logins: Iterable[str], *,
                      idle_timeout: float,
                      now: float | datetime | None = None) -> set[str]:
    """Which of these accounts still have a live session of ``app`` (not revoked, not idle,
    not past the absolute end, account active)."""
    wanted = list(logins)
    if not wanted:
        return set()
    at = _at(now)
    async with sessions() as session:
        found = (await session.scalars(
            select(Agent.login).join(WebSession, Agent.id == WebSession.agent_id)
            .where(Agent.login.in_(wanted), Agent.active.is_(True),
                   Agent.role == WebSession.role, WebSession.app == app,
                   WebSession.revoked_at.is_(None), WebSession.expires_at > at,
                   WebSession.last_seen_at > at - timedelta(seconds=idle_timeout)))).all()
    return set(found)


async def list_sessions(sessions: SessionFactory, *, login: str | None = None,
                        include_ended: bool = False,
                        now: float | datetime | None = None) -> list[SessionRow]:
    at = _at(now)
    query = (select(WebSession, Agent.login).join(Agent, Agent.id == WebSession.agent_id)
             .order_by(WebSession.created_at))
    if login is not None:
        query = query.where(Agent.login == login)
    if not include_ended:
        query = query.where(WebSession.revoked_at.is_(None), WebSession.expires_at > at)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [SessionRow(r.id, r.app, name, r.role, r.created_at, r.last_seen_at, r.expires_at,
                       r.revoked_at, r.revoked_reason, r.source_address, r.user_agent)
            for r, name in rows]


async def purge_ended(sessions: SessionFactory, *, keep: float = 30 * 86400,
                      now: float | datetime | None = None) -> int:
    """Delete sessions that ended (revoked or past their end) more than ``keep`` seconds ago."""
    before = _at(now) - timedelta(seconds=keep)
    async with sessions() as session, session.begin():
        result = await session.execute(delete(WebSession).where(
            or_(WebSession.expires_at < before, WebSession.revoked_at < before)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
